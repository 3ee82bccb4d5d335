-- Everything 0006 made, in reverse order. Rows whose vectors are under a transform keep those
-- values: run `RELAY_VECTOR_TRANSFORM=off relay keys reseal` before going down, or their
-- search is meaningless to the previous release.
DROP FUNCTION IF EXISTS relay_vector_keys_mixed(text, bytea, integer);
DROP INDEX IF EXISTS memory_chunks_vector_key_idx;
ALTER TABLE memory_chunks DROP COLUMN IF EXISTS vector_key;
