#!/usr/bin/env python3
"""Standalone migration script: hash existing plain text Kroger passwords.

A reproduction of the Python backend's `migrate_kroger_passwords.py` (see the deployment guide,
reference/original-deployment-guide.md: "Standalone migration script"), kept only as the
baseline of `bench-summary seed`: migration 001 end to end against this row-by-row script on
the same rows. It does what such scripts do, and what the guide says 001 did:

1. adds `kroger_password_hash` and `kroger_password_salt` to `user_profiles` if missing;
2. selects every row with a plain text password and no hash;
3. hashes each one with argon2-cffi's PasswordHasher (time_cost=3, memory_cost=65536,
   parallelism=4: the backend's password_utils defaults) and UPDATEs that one row, committing
   after each (an interrupted run keeps what it did, and a rerun skips hashed rows);
4. creates the partial index on hashed rows.

Usage: DATABASE_URL=postgresql://... python3 migrate_kroger_passwords.py
Needs psycopg2 and argon2-cffi (scripts/setup installs both). Prints `rows=N secs=S`.
"""

import logging
import os
import sys
import time

import psycopg2
from argon2 import PasswordHasher

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
logger = logging.getLogger("migrate_kroger_passwords")

# app/utils/password_utils.py
_hasher = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4)


def hash_password(password):
    """Returns (hash, salt): the PHC string and its salt."""
    hashed = _hasher.hash(password)
    # $argon2id$v=19$m=65536,t=3,p=4$SALT$HASH
    salt = hashed.split("$")[4]
    return hashed, salt


def add_columns(conn):
    with conn.cursor() as cur:
        cur.execute(
            "ALTER TABLE user_profiles ADD COLUMN IF NOT EXISTS kroger_password_hash TEXT"
        )
        cur.execute(
            "ALTER TABLE user_profiles ADD COLUMN IF NOT EXISTS kroger_password_salt TEXT"
        )
    conn.commit()


def hash_existing_passwords(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, kroger_password FROM user_profiles "
            "WHERE kroger_password IS NOT NULL AND kroger_password_hash IS NULL"
        )
        rows = cur.fetchall()
    conn.commit()
    logger.info("Found %d Kroger passwords to hash", len(rows))
    done = 0
    for user_id, plaintext in rows:
        try:
            hashed, salt = hash_password(plaintext)
            with conn.cursor() as cur:
                cur.execute(
                    "UPDATE user_profiles SET kroger_password_hash = %s, "
                    "kroger_password_salt = %s WHERE id = %s",
                    (hashed, salt, user_id),
                )
            conn.commit()
            done += 1
            if done % 100 == 0:
                logger.info("Hashed %d/%d passwords", done, len(rows))
        except Exception:
            conn.rollback()
            logger.exception("Failed to hash the Kroger password of user %s", user_id)
    return done


def create_index(conn):
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_user_profiles_kroger_password_hash "
            "ON user_profiles (kroger_password_hash) WHERE kroger_password_hash IS NOT NULL"
        )
    conn.autocommit = False


def main():
    url = os.environ.get("DATABASE_URL")
    if not url:
        logger.error("DATABASE_URL is not set")
        return 2
    start = time.monotonic()
    conn = psycopg2.connect(url)
    try:
        add_columns(conn)
        done = hash_existing_passwords(conn)
        create_index(conn)
    finally:
        conn.close()
    secs = time.monotonic() - start
    logger.info("Migration complete: %d passwords hashed in %.1fs", done, secs)
    print(f"rows={done} secs={secs:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
