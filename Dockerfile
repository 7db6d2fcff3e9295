# The console's image. The web server, the Celery worker and beat are this one image run with
# the Procfile's commands (compose.yaml gives each its command); see README, "Deployment".

# Build: the dependencies into a virtualenv, then the code and its collected static files.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml ./
RUN python -m venv .venv \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && .venv/bin/pip install -r /tmp/requirements.txt
COPY . .
# Hashed, gzipped static files and their manifest, served by the web server (WhiteNoise).
# collectstatic reads no secret, so it runs with DEBUG's defaults. The code is compiled here:
# at run time the app directory is not writable.
RUN DEBUG=1 .venv/bin/python manage.py collectstatic --noinput -v0 \
 && .venv/bin/python -m compileall -q agents approvals audit soc_console

# Run: the same Python, the virtualenv and the code; no compiler, no pip cache; not root.
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home soc
WORKDIR /app
COPY --from=build /app /app
# Celery beat keeps its schedule in .run/, as under `make run`.
RUN mkdir .run && chown soc:soc .run
USER soc
EXPOSE 8000
CMD [".venv/bin/python", "-m", "soc_console.serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--no-access-log"]
