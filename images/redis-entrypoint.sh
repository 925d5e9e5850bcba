#!/bin/sh
# Sluice's Redis: the `default` user (the control plane) gets a password, generated on first
# start into /run/sluice-secret/redis-password. That volume is mounted only into control-plane
# services, never into function containers: functions get ACL users of their own, confined to
# their key prefix (created by the orchestrator, kept in /data/users.acl).
set -eu
secret_dir=/run/sluice-secret
secret=$secret_dir/redis-password
acl=/data/users.acl
if [ ! -s "$secret" ]; then
  umask 022
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$secret.tmp"
  mv "$secret.tmp" "$secret"
fi
# The control stack's redis also makes the xds-connector's API token (SLUICE_XDS_TOKEN_FILE, in
# the `xds-secret` volume that the connector and its clients mount read-only).
if [ -n "${SLUICE_XDS_TOKEN_FILE:-}" ] && [ ! -s "$SLUICE_XDS_TOKEN_FILE" ]; then
  umask 022
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$SLUICE_XDS_TOKEN_FILE.tmp"
  mv "$SLUICE_XDS_TOKEN_FILE.tmp" "$SLUICE_XDS_TOKEN_FILE"
fi
hash=$(tr -d '\n' <"$secret" | sha256sum | cut -d' ' -f1)
umask 077
{
  echo "user default on #$hash ~* &* +@all"
  # Users the orchestrator made for functions (ACL SAVE), kept across restarts.
  if [ -f "$acl" ]; then grep '^user fn-' "$acl" || true; fi
} >"$acl.new"
mv "$acl.new" "$acl"
exec redis-server --aclfile "$acl" "$@"
