-- The demo's schema: the production table the Smart Meal Planner already has, created here so
-- that the demo runs on an empty database. IF NOT EXISTS: a real database keeps its table.
CREATE TABLE IF NOT EXISTS user_profiles (
    id INTEGER PRIMARY KEY,
    email TEXT,
    kroger_username TEXT,
    kroger_password TEXT
);

-- Demo users with plaintext Kroger passwords (as production had them), so that migration
-- 001_hash_kroger_passwords has real work to do. Only into an empty table, and naming only the
-- columns every version of the table has (id, kroger_password).
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 1000)
INSERT INTO user_profiles (id, kroger_password)
SELECT n, 'kroger-demo-' || n
FROM seq
WHERE NOT EXISTS (SELECT 1 FROM user_profiles);
