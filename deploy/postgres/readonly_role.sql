-- The SELECT-only role the reconciliation pipeline uses to read Bookmarked's database.
--
-- Reconciliation never writes to Bookmarked. The connector already opens every session
-- with `default_transaction_read_only=on`, but any session can switch that off again
-- (`SET default_transaction_read_only = off`, `SET TRANSACTION READ WRITE`), so it is a
-- seat belt, not a boundary. This role is the boundary: it may connect and SELECT the
-- tables roster reconciliation reads (reconciliation/bookmarked/schema.sql) and nothing
-- else. It owns nothing, holds no INSERT, UPDATE, DELETE, TRUNCATE or DDL privilege, and
-- cannot see Bookmarked's other tables. Its sessions also default to read-only, so even a
-- client that forgets the startup option gets a read-only transaction.
--
-- Run it as the owner of the Bookmarked tables (or a superuser), connected to the
-- Bookmarked database; it is idempotent, and run once per database it grants that one:
--
--     psql "postgresql://OWNER@HOST:5432/bookmarked" -v ON_ERROR_STOP=1 \
--          -f deploy/postgres/readonly_role.sql
--     psql "postgresql://OWNER@HOST:5432/bookmarked" -c '\password bookmarked_reconciliation'
--
-- Then store `postgresql://bookmarked_reconciliation:PASSWORD@HOST:5432/bookmarked` in
-- AWS Secrets Manager (or an environment variable) and point the customer settings at it:
-- `"database_url": "aws-secretsmanager:bookmarked/reconciliation#url"`. The password never
-- goes into a settings file.
--
-- When schema.sql gains a table the pipeline reads, add it to the GRANT SELECT below.
-- On PostgreSQL 14 and older, PUBLIC may still CREATE in schema public; run
-- `REVOKE CREATE ON SCHEMA public FROM PUBLIC;` there (the default since PostgreSQL 15).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bookmarked_reconciliation') THEN
        CREATE ROLE bookmarked_reconciliation LOGIN
            NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
    END IF;
END
$$;

-- Connect to this database (whatever its name) and look up names in its public schema.
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO bookmarked_reconciliation',
                   current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO bookmarked_reconciliation;

-- Read exactly the tables of the roster contract.
GRANT SELECT ON customers, schools, users, parent_students, classes, enrollments, sync_runs
    TO bookmarked_reconciliation;

-- Every session of this role starts read-only, with or without the client's option.
ALTER ROLE bookmarked_reconciliation SET default_transaction_read_only = on;
