#!/bin/sh
# Run by the postgres image once, when it creates the database (compose.yaml mounts it into
# /docker-entrypoint-initdb.d): the console's runtime role. The database's owner, soc, runs
# `migrate`, which grants this role what the console needs and no more (README, "Audit log").
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v app_password="$APP_DB_PASSWORD" <<'SQL'
CREATE ROLE soc_app LOGIN PASSWORD :'app_password';
SQL
