-- Irreversible by design: the demo never drops a user table it may not own.
SELECT 1;
