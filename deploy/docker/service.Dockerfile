# One image per Agora service (users, items, notifier), built from the repository root:
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=users -t agora/users .
# docker-compose.yml builds all three. Only classic Dockerfile syntax (no BuildKit-only
# features), so both the legacy builder and BuildKit build it.
#
# Offline (no registry, no index): --build-arg WHEELHOUSE=.wheelhouse names a folder of the
# build context holding requirements-<service>.txt exported from uv.lock (with hashes) and the
# wheels they name, plus uv and the build backend; deploy/docker/images.sh makes it on the host
# and builds with --network none. Without it, uv resolves from the lock against the index.

# A patch release, never the floating 3.11 tag: 3.11.10 fixed CVE-2024-6923 (email header
# injection through encoded-words) and 3.11.15 CVE-2026-1299 (BytesGenerator did not check
# headers); see docs/security.md. Raise it with each security release.
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# --- builder: resolve the service's dependencies from uv.lock into /app/.venv ---------------
FROM ${PYTHON_IMAGE} AS builder
ARG SERVICE
ARG UV_VERSION=0.13.9
ARG WHEELHOUSE=deploy/docker/wheelhouse
RUN case "${SERVICE}" in \
        users|items|notifier) ;; \
        *) echo "build with --build-arg SERVICE=users|items|notifier (got '${SERVICE}')" >&2; exit 1 ;; \
    esac
COPY ${WHEELHOUSE}/ /wheels/
RUN if [ -f "/wheels/requirements-${SERVICE}.txt" ]; then \
        pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /wheels \
            "uv==${UV_VERSION}"; \
    else \
        pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"; \
    fi
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# 1. Third-party dependencies first, from the workspace manifests and the lock only: this
#    layer is reused until a pyproject.toml or uv.lock changes.
COPY pyproject.toml uv.lock ./
COPY shared/contract/pyproject.toml shared/contract/pyproject.toml
COPY shared/kit/pyproject.toml shared/kit/pyproject.toml
COPY deploy/pyproject.toml deploy/pyproject.toml
COPY services/users/pyproject.toml services/users/pyproject.toml
COPY services/items/pyproject.toml services/items/pyproject.toml
COPY services/notifier/pyproject.toml services/notifier/pyproject.toml
RUN if [ -f "/wheels/requirements-${SERVICE}.txt" ]; then \
        uv venv --quiet /app/.venv \
        && uv pip install --python /app/.venv/bin/python --no-index --find-links /wheels \
            --require-hashes -r "/wheels/requirements-${SERVICE}.txt"; \
    else \
        uv sync --frozen --no-dev --no-install-workspace --package "agora-${SERVICE}"; \
    fi
# 2. The workspace packages the service needs (contract, kit, the service), as real installs
#    rather than editable links, so the runtime stage needs no source tree.
COPY shared/ shared/
COPY services/ services/
RUN if [ -f "/wheels/requirements-${SERVICE}.txt" ]; then \
        uv pip install --python /app/.venv/bin/python --no-index --find-links /wheels \
            --no-deps ./shared/contract ./shared/kit "./services/${SERVICE}"; \
    else \
        uv sync --frozen --no-dev --no-editable --package "agora-${SERVICE}"; \
    fi

# --- runtime: slim Python, the venv, the service's migrations, a non-root user --------------
FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="agora-${SERVICE}" \
      org.opencontainers.image.description="Agora ${SERVICE} service"
ENV PATH=/app/.venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AGORA_SERVICE=${SERVICE} \
    AGORA_APP=agora_${SERVICE}.main:create_app \
    PORT=8000
# A named volume mounted on /var/lib/agora/keys inherits its owner (the users service's keys).
RUN groupadd --system --gid 10001 agora \
    && useradd --system --uid 10001 --gid agora --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin agora \
    && install -d -o agora -g agora -m 0700 /var/lib/agora /var/lib/agora/keys
COPY --from=builder /app/.venv /app/.venv
# alembic.ini, migrations/ and whatever else the service keeps beside its package.
COPY --from=builder /src/services/${SERVICE} /app/service
COPY deploy/docker/entrypoint.sh /usr/local/bin/agora-entrypoint
COPY deploy/docker/healthcheck.py deploy/docker/ensure_keys.py /usr/local/lib/agora/
RUN chmod 0755 /usr/local/bin/agora-entrypoint \
    && python -c "import importlib; importlib.import_module('agora_${SERVICE}.main')"
WORKDIR /app/service
USER agora:agora
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/agora/healthcheck.py"]
ENTRYPOINT ["agora-entrypoint"]
CMD ["serve"]
