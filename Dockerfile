# One image for every slotstream app service (stream worker, sink, producers, api).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY slotstream ./slotstream
COPY producers ./producers
COPY streams ./streams
COPY sinks ./sinks
COPY api ./api
RUN pip install . && useradd --system --home /var/lib/slotstream slotstream \
    && mkdir -p /var/lib/slotstream && chown slotstream /var/lib/slotstream
USER slotstream
ENTRYPOINT []
CMD ["slotstream", "--help"]
