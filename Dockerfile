# One image for every role: web (default command), worker and scheduler differ only in the command.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libmariadb-dev \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r /tmp/requirements.txt

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8000
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
WORKDIR /app
COPY --chown=app:app . .
# Static files are collected at build time and served by whitenoise. A throwaway key and a dummy
# Redis URL keep the settings from refusing to load or starting the embedded Redis during the build.
RUN DEBUG=false SECRET_KEY=build-only REDIS_URL=redis://build-only:6379/0 \
    python manage.py collectstatic --noinput -v0 \
 && mkdir -p /app/logs /app/var && chown -R app:app /app/logs /app/var /app/staticfiles
USER app
EXPOSE 8000
# The Procfile's web command, scripts/web (granian 2 x 2, chosen by measurement: docs/BENCHMARKS.md,
# section 1a), listening on every interface of the container.
ENV WEB_HOST=0.0.0.0
CMD ["/app/scripts/web"]
