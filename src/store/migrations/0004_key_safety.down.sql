-- Everything 0004 made, in reverse order. The master key check is lost (the next start writes
-- it again with the key it is given); writes for shredded tenants are then refused by the
-- keyring alone.
DROP FUNCTION IF EXISTS relay_purge_shredded(integer);
DROP TRIGGER IF EXISTS memory_chunks_refuse_shredded ON memory_chunks;
DROP FUNCTION IF EXISTS relay_refuse_shredded();
DROP TABLE IF EXISTS master_key_check;
