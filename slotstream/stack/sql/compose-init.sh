#!/bin/sh
# Init script of the compose timescaledb container (/docker-entrypoint-initdb.d): creates
# the same roles and database as the local stack, from the same SQL file.
set -eu
psql -v ON_ERROR_STOP=1 -X -q -U "$POSTGRES_USER" -d postgres \
  -v owner="$SLOTSTREAM_POSTGRES__USER" \
  -v owner_password="$SLOTSTREAM_POSTGRES__PASSWORD" \
  -v reader="$SLOTSTREAM_POSTGRES__READER_USER" \
  -v reader_password="$SLOTSTREAM_POSTGRES__READER_PASSWORD" \
  -v dbname="$SLOTSTREAM_POSTGRES__DATABASE" \
  -v schema="$SLOTSTREAM_POSTGRES__DB_SCHEMA" \
  -f /slotstream/bootstrap.sql
