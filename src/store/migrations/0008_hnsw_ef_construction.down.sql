-- Back to 0007's table-wide index, built with ef_construction 64. Per-scope indexes are kept.
SET LOCAL maintenance_work_mem = '1GB';
DROP INDEX IF EXISTS memory_chunks_embedding_hnsw_idx;
CREATE INDEX memory_chunks_embedding_hnsw_idx ON memory_chunks
  USING hnsw ((embedding::halfvec({{embedding_dim}})) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64);
