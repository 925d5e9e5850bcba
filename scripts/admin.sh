# Sourced by the scripts that call /system/*: `admin_curl` is curl with basic auth as `admin`,
# from the password `make up` generated (SLUICE_SECRETS_DIR, default ./secrets).
SLUICE_ADMIN_PASSWORD_FILE=${SLUICE_ADMIN_PASSWORD_FILE:-${SLUICE_SECRETS_DIR:-secrets}/admin-password}
export SLUICE_ADMIN_PASSWORD_FILE
admin_curl() {
  if [ ! -r "$SLUICE_ADMIN_PASSWORD_FILE" ]; then
    echo "no admin password at $SLUICE_ADMIN_PASSWORD_FILE: run make up first" >&2
    return 1
  fi
  # The credential goes through a config on stdin, never onto the command line.
  printf 'user = "admin:%s"\n' "$(head -n1 "$SLUICE_ADMIN_PASSWORD_FILE")" | curl -K - "$@"
}
