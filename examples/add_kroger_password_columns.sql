-- Manual DDL for DBAs (PostgreSQL): the schema part of migration 001_hash_kroger_passwords.
-- Idempotent: safe to run any number of times, before or after the migration.
-- Run it outside a transaction block (CREATE INDEX CONCURRENTLY cannot run inside one):
--   psql -d your_database -f add_kroger_password_columns.sql
-- The hashing itself is done by the migration or by `migrate_kroger_passwords work`.

-- Fail fast instead of queueing every query of the app behind the ALTER's table lock.
SET lock_timeout = '5s';

ALTER TABLE user_profiles ADD COLUMN IF NOT EXISTS kroger_password_hash TEXT;
ALTER TABLE user_profiles ADD COLUMN IF NOT EXISTS kroger_password_salt TEXT;

RESET lock_timeout;

-- An interrupted CREATE INDEX CONCURRENTLY leaves an INVALID index that IF NOT EXISTS would
-- then keep: drop it first if so (this DO block only drops an invalid one).
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relname = 'idx_user_profiles_kroger_password_hash'
          AND n.nspname = current_schema() AND NOT i.indisvalid
    ) THEN
        RAISE NOTICE 'dropping the invalid index idx_user_profiles_kroger_password_hash';
        EXECUTE 'DROP INDEX idx_user_profiles_kroger_password_hash';
    END IF;
END $$;

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_user_profiles_kroger_password_hash
    ON user_profiles (kroger_password_hash)
    WHERE kroger_password_hash IS NOT NULL;
