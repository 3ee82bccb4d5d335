-- The table-wide HNSW index is built with ef_construction 128 (was 64, pgvector's default): each
-- row's neighbours are chosen from twice the candidates, so the graph holds better links. The
-- scope that the table-wide index serves through a filter (a user with more than a fifth of the
-- rows) reaches its own rows in fewer hops: heavy recall@10 0.998 in three 300,000-row builds
-- against 0.961-0.993 in five with 64, at the same ef_search (docs/benchmarks.md,
-- "`ef_construction` 128 (migration 0008)").
-- The build takes about 2.6x as long: about 4.5 minutes per 300,000 rows on 2 cores, the table
-- locked meanwhile; run it in a quiet hour (docs/operations.md, "Upgrading").
-- Per-scope indexes copy this index's definition when `relay db index-scopes` builds them; the
-- ones already built are kept (their graphs are small and already found their rows) and are
-- rebuilt with 128 only when their scope's index is dropped and made again.
SET LOCAL maintenance_work_mem = '1GB';
DROP INDEX IF EXISTS memory_chunks_embedding_hnsw_idx;
CREATE INDEX memory_chunks_embedding_hnsw_idx ON memory_chunks
  USING hnsw ((embedding::halfvec({{embedding_dim}})) halfvec_cosine_ops) WITH (m = 16, ef_construction = 128);
