# digestd: the daemon (scheduler + web endpoints) and its admin CLI.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY digestd ./digestd
COPY templates ./templates
COPY migrations ./migrations
COPY seeds ./seeds
# A wheel install bundles templates/, migrations/ and seeds/ inside the package.
RUN pip install . \
    && useradd --create-home --uid 10001 digestd \
    && mkdir -p /data && chown digestd /data

USER digestd
# SQLite (when chosen) and any generated files live in the /data volume.
WORKDIR /data
ENV DIGESTD_DATABASE_URL=sqlite:////data/digestd.db \
    DIGESTD_LISTEN=0.0.0.0:8025
EXPOSE 8025
CMD ["sh", "-c", "digestd db upgrade && exec digestd run"]
