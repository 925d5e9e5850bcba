# Python function base images. Built by scripts/images.sh from sluice/base (no registry, no pull).
#   --target python        -> sluice/python:<v>        (what function containers run)
#   --target python-build  -> sluice/python-build:<v>  (adds pip; used only to install
#                             a function's extra_dependencies at image build time)
ARG SLUICE_VERSION
FROM sluice/base:${SLUICE_VERSION} AS py
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log /usr/share/doc/* /usr/share/man/*

FROM py AS python-build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_BREAK_SYSTEM_PACKAGES=1

FROM py AS python
COPY faas-runtime /usr/local/bin/faas-runtime
# Generated from common/proto by scripts/images.sh (protoc): sluice_sip_pb2, the SIP contract.
# The runtime's isolated interpreter ignores PYTHONPATH: the worker appends this to sys.path.
COPY sdk /opt/sluice/python
ENV SLUICE_MODE=python PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SLUICE_PYTHON_SDK=/opt/sluice/python
USER 10001:10001
WORKDIR /opt/function
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/faas-runtime"]
