# syntax=docker/dockerfile:1
# cleanup-operator image: `docker build -t cleanup-operator .`
# Stage 1 builds the wheel and installs it, with the pinned dependencies of constraints.txt, into a
# virtualenv; stage 2 is the same base image with only that virtualenv, run as a non-root user.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ operator/
RUN python -m pip wheel --no-deps --wheel-dir /wheels .
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --constraint constraints.txt /wheels/cleanup_operator-*.whl \
    && /opt/venv/bin/cleanup-operator --help

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
