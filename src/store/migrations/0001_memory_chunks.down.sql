-- Everything 0001 made, in reverse order. It runs in one transaction: a failed down changes nothing.
DROP POLICY IF EXISTS memory_chunks_delete ON memory_chunks;
DROP POLICY IF EXISTS memory_chunks_update ON memory_chunks;
DROP POLICY IF EXISTS memory_chunks_insert ON memory_chunks;
DROP POLICY IF EXISTS memory_chunks_select ON memory_chunks;
DROP TABLE IF EXISTS memory_chunks;
-- The vector extension stays: other objects may use it and only a superuser may create it.
