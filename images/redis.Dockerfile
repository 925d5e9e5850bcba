# Redis for the compose stack, from Debian's package (no registry image). The entrypoint
# protects the `default` user with a generated password (see redis-entrypoint.sh).
ARG SLUICE_VERSION
FROM sluice/base:${SLUICE_VERSION}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log /usr/share/doc/* /usr/share/man/* \
 && mkdir -p /data /run/sluice-secret /run/sluice-xds && chown redis:redis /data /run/sluice-secret /run/sluice-xds
COPY redis-entrypoint.sh /usr/local/bin/sluice-redis
USER redis
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/sluice-redis"]
CMD ["--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", "--appendonly", "yes", "--save", ""]
