# syntax=docker/dockerfile:1
# The reconciliation image: the code location served over gRPC (`dagster code-server
# start`, the default command), and the same image runs each customer's run (the run
# launchers start it with `dagster api execute_run`), the webserver and the daemon:
#
#   docker build -t reconciliation:1 .
#   docker run reconciliation:1                                       # code server, port 4000
#   docker run reconciliation:1 dagster-webserver -h 0.0.0.0 -p 3000 -w /app/workspace.yaml
#   docker run reconciliation:1 dagster-daemon run -w /app/workspace.yaml
#
# Only the pinned set of constraints.txt is installed (the `deploy` extra adds the K8s and
# ECS run launchers); the build stage makes the virtualenv, the final stage copies it in,
# so no compiler, pip cache or uv is left in the image. See docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
RUN python -m venv /opt/uv \
    && /opt/uv/bin/pip install "uv==0.13.9" \
    && python -m venv /opt/venv
WORKDIR /src
# dependencies first: a code change does not reinstall them
COPY pyproject.toml constraints.txt ./
COPY reconciliation ./reconciliation
RUN /opt/uv/bin/uv pip install --python /opt/venv/bin/python --no-cache \
        -c constraints.txt ".[deploy]" \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="bookmarked-roster-reconciliation" \
      org.opencontainers.image.description="Dagster code location: SIS vs Bookmarked roster reconciliation"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAGSTER_HOME=/opt/dagster/instances/postgres \
    RECONCILIATION_SETTINGS_DIR=/app/customer-integration-settings \
    RECONCILIATION_REPORTS_DIR=/var/lib/reconciliation/reports \
    RECONCILIATION_STORAGE_DIR=/var/lib/reconciliation/storage
RUN groupadd --system --gid 10001 reconcile \
    && useradd --system --uid 10001 --gid reconcile --home-dir /app --shell /usr/sbin/nologin reconcile \
    && mkdir -p /app /var/lib/reconciliation /opt/dagster/instances \
    && chown reconcile:reconcile /var/lib/reconciliation
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root workspace.yaml ./
COPY --chown=root:root customer-integration-settings/template.json ./customer-integration-settings/
COPY --chown=root:root deploy/dagster.postgres.yaml /opt/dagster/instances/postgres/dagster.yaml
COPY --chown=root:root deploy/ecs/dagster.yaml /opt/dagster/instances/ecs/dagster.yaml
COPY --chown=root:root deploy/ecs/workspace.yaml /opt/dagster/instances/ecs/workspace.yaml
# Dagster writes small state files beside dagster.yaml: the instance folders are the user's
RUN chown -R reconcile:reconcile /opt/dagster/instances
USER 10001:10001
EXPOSE 4000 3000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", \
     "-m", "reconciliation.definitions", "-a", "defs", "--location-name", "reconciliation"]
