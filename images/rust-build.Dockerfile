# Builder for Rust functions: a C linker plus the Rust toolchain copied from the machine that
# runs `make images` (no toolchain can be downloaded here). Used only as a build stage.
ARG SLUICE_VERSION
FROM sluice/base:${SLUICE_VERSION}
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev protobuf-compiler \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log /usr/share/doc/* /usr/share/man/*
COPY toolchain /opt/rust
# The platform's contracts (common/proto), for functions that generate code from them
# (prost-build finds protoc on PATH; build scripts read SLUICE_PROTO_DIR).
COPY proto /opt/sluice/proto
ENV PATH=/opt/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/opt/cargo-home \
    SLUICE_PROTO_DIR=/opt/sluice/proto
