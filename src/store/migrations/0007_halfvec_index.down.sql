-- Back to the full-precision HNSW index that 0001 made. Per-scope indexes are dropped (the
-- previous release orders by the full vectors): run `relay db index-scopes` after going down.
DO $$
DECLARE
  name text;
BEGIN
  FOR name IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE i.indrelid = 'memory_chunks'::regclass AND starts_with(c.relname, 'memory_chunks_hnsw_scope_')
  LOOP
    EXECUTE format('DROP INDEX %I', name);
  END LOOP;
END $$;
SET LOCAL maintenance_work_mem = '1GB';
DROP INDEX IF EXISTS memory_chunks_embedding_hnsw_idx;
CREATE INDEX memory_chunks_embedding_hnsw_idx ON memory_chunks USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
