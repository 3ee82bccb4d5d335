-- Everything 0003 made, in reverse order. Stored idempotency keys are lost: a retry of a
-- write made before the revert would write again.
DROP FUNCTION IF EXISTS relay_purge_expired(integer);
DROP POLICY IF EXISTS idempotency_keys_delete ON idempotency_keys;
DROP POLICY IF EXISTS idempotency_keys_insert ON idempotency_keys;
DROP POLICY IF EXISTS idempotency_keys_select ON idempotency_keys;
DROP TABLE IF EXISTS idempotency_keys;
