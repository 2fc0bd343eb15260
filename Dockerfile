# syntax=docker/dockerfile:1
# cleanup-operator image: `docker build -t cleanup-operator .` (or `podman build`); see README, "The image".
#
# Stage 1 installs the runtime dependencies of pyproject.toml, pinned by constraints.txt, and then the
# operator's wheel into a virtualenv without pip; stage 2 is the same base image with only that
# virtualenv, run as a non-root user. Any Debian-like image with Python 3.11+ and its venv module can be
# the base: CI passes one built from Debian's packages (hack/image.sh) as PYTHON_IMAGE.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
# /opt/build holds pip (and builds the wheel); /opt/venv, what ships, gets no pip of its own.
RUN python3 -m venv /opt/build && python3 -m venv --without-pip /opt/venv
WORKDIR /src
# The dependencies first, in a layer of their own: a change to the code alone reuses it.
COPY pyproject.toml constraints.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > requirements.txt \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --constraint constraints.txt --requirement requirements.txt
COPY README.md ./
COPY operator/ operator/
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/build/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps /wheels/cleanup_operator-*.whl \
    && /opt/build/bin/pip --python /opt/venv/bin/python check \
    && /opt/venv/bin/cleanup-operator --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="cleanup-operator" \
      org.opencontainers.image.description="Kubernetes operator for artifact clean-up across vendors" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/venv /opt/venv
# A numeric user (no /etc/passwd entry needed), so Kubernetes can verify runAsNonRoot.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["cleanup-operator"]
CMD ["--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz", "--log-format", "json"]
