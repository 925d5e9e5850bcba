#!/usr/bin/env bash
# Builds every Sluice image on this machine, from nothing, without a registry:
#   sluice/base          Debian bookworm (minbase) made with debootstrap + `docker import`
#   sluice/python        python3 + faas-runtime + the SIP contract module (python function base)
#   sluice/python-build  python3 + pip            (build stage for extra_dependencies)
#   sluice/runtime       faas-runtime only         (binary / http function base)
#   sluice/rust-build    gcc + this machine's Rust toolchain (build stage for Rust functions)
#   sluice/redis         Debian's redis-server
#   sluice/<service>     gateway, router, xds-connector, stats-listener, orchestrator, sip-proxy, mdf,
#                        engine-filter
# Every tag is pinned to the workspace version; nothing here ever pulls.
#
# Env: SLUICE_DEBIAN_MIRROR (http://deb.debian.org/debian), SLUICE_DEBIAN_SUITE (bookworm),
#      SLUICE_CA_BUNDLE (/etc/ssl/certs/ca-certificates.crt: trusted inside images, so a
#      TLS-intercepting proxy works for pip/cargo at function build time),
#      SLUICE_REBUILD_BASE=1 to rebuild the debootstrap base, SLUICE_IMAGES="a b" to build a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
MIRROR=${SLUICE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=${SLUICE_DEBIAN_SUITE:-bookworm}
CA_BUNDLE=${SLUICE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
WORK=$ROOT/target/images
SERVICES="gateway router xds-connector stats-listener orchestrator sip-proxy mdf engine-filter"
WANT=${SLUICE_IMAGES:-"base python runtime rust-build redis $SERVICES"}
mkdir -p "$WORK"

log() { printf '\033[1m[images]\033[0m %s\n' "$*"; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
want() { [[ " $WANT " == *" $1 "* ]]; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

# docker build with a private context dir; never pulls (every FROM is built here first).
build() { # tag dockerfile context [extra docker build args...]
  local tag=$1 file=$2 ctx=$3; shift 3
  log "building $tag"
  # (The engine here has only the classic builder; its deprecation notice is dropped.)
  docker build --quiet --build-arg "SLUICE_VERSION=$VERSION" -f "$file" -t "$tag" "$@" "$ctx" \
    2> >(grep -v -e 'DEPRECATED: The legacy builder' -e 'Install the buildx' -e 'docs.docker.com/go/buildx' -e '^ *$' >&2) >/dev/null
}

base() {
  local tag=sluice/base:$VERSION
  if have_image "$tag" && [ -z "${SLUICE_REBUILD_BASE:-}" ]; then log "$tag exists"; return; fi
  command -v debootstrap >/dev/null || { log "installing debootstrap"; $SUDO apt-get install -y -q debootstrap >/dev/null; }
  local rootfs=$WORK/rootfs
  $SUDO rm -rf "$rootfs"; mkdir -p "$rootfs"
  log "debootstrap $SUITE (minbase) from $MIRROR"
  $SUDO debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log"; exit 1; }
  # Trust what this machine trusts (a TLS-intercepting proxy's CA included), in a way that
  # survives update-ca-certificates in derived images.
  if [ -f "$CA_BUNDLE" ]; then
    $SUDO cp "$CA_BUNDLE" "$rootfs/usr/local/share/ca-certificates/sluice-build-host.crt"
    $SUDO cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  fi
  echo "deb $MIRROR $SUITE main" | $SUDO tee "$rootfs/etc/apt/sources.list" >/dev/null
  # apt in containers: no recommends, keep images small.
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' | $SUDO tee "$rootfs/etc/apt/apt.conf.d/90sluice" >/dev/null
  # Function containers run as uid 10001 (no home, no shell needed).
  echo 'sluice:x:10001:10001:sluice function:/tmp:/usr/sbin/nologin' | $SUDO tee -a "$rootfs/etc/passwd" >/dev/null
  echo 'sluice:x:10001:' | $SUDO tee -a "$rootfs/etc/group" >/dev/null
  $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
  log "importing $tag"
  $SUDO tar -C "$rootfs" --numeric-owner -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    -c 'CMD ["/bin/bash"]' -m "sluice base: debian $SUITE minbase" - "$tag" >/dev/null
  $SUDO rm -rf "$rootfs"
}

need_binaries() {
  log "cargo build --release (service binaries and faas-runtime)"
  cargo build --release --locked --workspace --bins
}

# Copies a release binary without its debug info (images stay small; symbols are kept).
copy_bin() { # name dest-dir
  cp "target/release/$1" "$2/$1"
  objcopy --strip-debug "$2/$1" 2>/dev/null || strip --strip-debug "$2/$1" 2>/dev/null || true
}

python_images() {
  local ctx=$WORK/ctx-python; rm -rf "$ctx"; mkdir -p "$ctx/sdk"
  copy_bin faas-runtime "$ctx"
  # The platform's contracts for Python functions: `import sluice_sip_pb2` (a SIP handler
  # declares the `protobuf` package in its extra_dependencies).
  protoc --proto_path=common/proto --python_out="$ctx/sdk" common/proto/sluice_sip.proto
  build "sluice/python-build:$VERSION" images/python.Dockerfile "$ctx" --target python-build
  build "sluice/python:$VERSION" images/python.Dockerfile "$ctx" --target python
}

runtime_image() {
  local ctx=$WORK/ctx-runtime; rm -rf "$ctx"; mkdir -p "$ctx"
  copy_bin faas-runtime "$ctx"
  build "sluice/runtime:$VERSION" images/runtime.Dockerfile "$ctx"
}

rust_build_image() {
  local tag=sluice/rust-build:$VERSION
  local sysroot; sysroot=$(rustc --print sysroot)
  local stamp; stamp=$(rustc --version | tr ' ()' '___')-$(cat images/rust-build.Dockerfile common/proto/*.proto | sha256sum | cut -c1-12)
  if have_image "$tag" && [ "$(docker image inspect -f '{{index .Config.Labels "sluice.rustc"}}' "$tag")" = "$stamp" ]; then
    log "$tag exists ($stamp)"; return
  fi
  local ctx=$WORK/ctx-rust-build; rm -rf "$ctx"; mkdir -p "$ctx/toolchain/bin" "$ctx/toolchain/lib/rustlib"
  # Only what compiling needs: rustc, cargo, their shared libraries and the host target's std.
  cp "$sysroot/bin/rustc" "$sysroot/bin/cargo" "$ctx/toolchain/bin/"
  cp -a "$sysroot"/lib/*.so* "$ctx/toolchain/lib/"
  cp -a "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu" "$ctx/toolchain/lib/rustlib/"
  cp -r common/proto "$ctx/proto"
  build "$tag" images/rust-build.Dockerfile "$ctx" --label "sluice.rustc=$stamp"
  rm -rf "$ctx"
}

redis_image() {
  local tag=sluice/redis:$VERSION
  local stamp; stamp=$(cat images/redis.Dockerfile images/redis-entrypoint.sh | sha256sum | cut -c1-16)
  if have_image "$tag" && [ "$(docker image inspect -f '{{index .Config.Labels "sluice.stamp"}}' "$tag")" = "$stamp" ]; then
    log "$tag exists"; return
  fi
  local ctx=$WORK/ctx-redis; rm -rf "$ctx"; mkdir -p "$ctx"
  cp images/redis-entrypoint.sh "$ctx/"
  build "$tag" images/redis.Dockerfile "$ctx" --label "sluice.stamp=$stamp"
}

service_image() { # name
  local name=$1 uid=10001 ctx=$WORK/ctx-$1
  # The engine filter alone holds the Docker socket, which is root's: it runs as root (with
  # no capability). The orchestrator reaches the engine only through it.
  [ "$name" = engine-filter ] && uid=0
  # The router serves the gateway on a Unix socket in the `dataplane-socket` volume: its
  # mount point is the router's own, so the volume starts with this owner and mode.
  local prepare=""
  [ "$name" = router ] && prepare="RUN install -d -o $uid -g $uid -m 0750 /run/sluice-dataplane"
  rm -rf "$ctx"; mkdir -p "$ctx"
  copy_bin "$name" "$ctx"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
ARG SLUICE_VERSION
FROM sluice/base:\${SLUICE_VERSION}
COPY $name /usr/local/bin/$name
$prepare
ENV SLUICE_LOG_FORMAT=json
USER $uid
ENTRYPOINT ["/usr/local/bin/$name"]
DOCKERFILE
  build "sluice/$name:$VERSION" "$ctx/Dockerfile" "$ctx"
}

want base && base
have_image "sluice/base:$VERSION" || { echo "sluice/base:$VERSION is missing: build it first (SLUICE_IMAGES=base)" >&2; exit 1; }
if want python || want runtime || [ -n "$(for s in $SERVICES; do want "$s" && echo y; done)" ]; then need_binaries; fi
want python && python_images
want runtime && runtime_image
want rust-build && rust_build_image
want redis && redis_image
for s in $SERVICES; do want "$s" && service_image "$s"; done
log "done:"
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep '^sluice/' | sort
