-- Roles and database of slotstream; idempotent. Run by a superuser connected to the
-- `postgres` database, with psql variables owner, owner_password, reader,
-- reader_password, dbname, schema. Used by the local stack (`slotstream stack up`) and by the
-- compose timescaledb container's init script, so both stacks get the same roles.
\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I LOGIN', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner') \gexec
ALTER ROLE :"owner" WITH LOGIN PASSWORD :'owner_password';

SELECT format('CREATE ROLE %I LOGIN', :'reader')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader') \gexec
ALTER ROLE :"reader" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'reader_password';
-- Belt and braces: even a mistaken GRANT cannot make the dashboard role write.
ALTER ROLE :"reader" SET default_transaction_read_only = on;

SELECT format('CREATE DATABASE %I OWNER %I', :'dbname', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'dbname') \gexec

\connect :"dbname"
CREATE EXTENSION IF NOT EXISTS timescaledb;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CONNECT ON DATABASE :"dbname" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
-- Dashboards and ad-hoc queries of the reader name tables unqualified: the sink's schema
-- first (created later by its migrations), then public (the timescaledb functions).
ALTER ROLE :"reader" IN DATABASE :"dbname" SET search_path = :"schema", public;
