-- The HNSW indexes hold half-precision copies of the vectors (halfvec: 2 bytes a dimension).
-- A search reads half the index pages for the same candidates, and the freed time buys a
-- larger ef_search where the table-wide index serves a scope (docs/benchmarks.md, "halfvec").
-- The table keeps the full-precision vectors: every distance a search returns, the exact
-- path and the final order are computed from them; only the graph walk is in halfvec.
-- The rebuild holds the table for its length (about 4 minutes per 300,000 rows on 2 cores):
-- on a large table, run it in a quiet hour (docs/operations.md, "Upgrading").
SET LOCAL maintenance_work_mem = '1GB';
DROP INDEX IF EXISTS memory_chunks_embedding_hnsw_idx;
CREATE INDEX memory_chunks_embedding_hnsw_idx ON memory_chunks
  USING hnsw ((embedding::halfvec({{embedding_dim}})) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64);

-- The per-scope indexes of `relay db index-scopes` were built on the full vectors, which the
-- search no longer orders by: dropped here, built again in halfvec by its next run.
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
