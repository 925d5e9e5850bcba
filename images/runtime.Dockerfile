# Base for binary and http-mode functions (Rust or any prebuilt executable): the watchdog only.
ARG SLUICE_VERSION
FROM sluice/base:${SLUICE_VERSION}
COPY faas-runtime /usr/local/bin/faas-runtime
ENV SLUICE_MODE=binary
USER 10001:10001
WORKDIR /opt/function
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/faas-runtime"]
