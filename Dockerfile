# pool-domain-manager: one image, two commands.
#   serve:    (default) gunicorn -c gunicorn.conf.py wsgi:app
#   migrate:  alembic upgrade head      (the Helm pre-install/pre-upgrade hook Job)
# Build:  docker build -t pool-domain-manager:2.0.0 .
# The base is pinned by tag; pin it by digest too (python:3.11.16-slim-bookworm@sha256:...)
# once the registry the build uses has been checked.

# ---- builder: wheels of the project and its runtime dependencies, installed into a venv
FROM python:3.11.16-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the wheel is built from (pyproject.toml names README.md as the readme).
COPY pyproject.toml README.md ./
COPY pdm_app/ pdm_app/

# The project's own wheel, then wheels of its [project.dependencies] (never the `test`
# extra), installed from those files only into a venv without pip.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip wheel --wheel-dir /wheels /wheels/pool_domain_manager-*.whl \
 && python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --no-index --find-links /wheels /wheels/pool_domain_manager-*.whl

# ---- runtime: the interpreter, the venv, and the files the two commands read
FROM python:3.11.16-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

COPY --from=builder /opt/venv /opt/venv

# alembic.ini sits in the working directory, so `alembic upgrade head` runs as is.
WORKDIR /app
COPY wsgi.py gunicorn.conf.py alembic.ini ./
COPY alembic/ alembic/

# nobody:nogroup, numeric so Kubernetes' runAsNonRoot can verify it.
USER 65534:65534
EXPOSE 8080

CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
