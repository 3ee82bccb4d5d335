-- Memory chunks, one row per stored piece of text, scoped to tenant and user.
-- The migrator fills in the embedding dimensions and the app role (both validated) where the braces stand.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE memory_chunks (
  id          uuid        PRIMARY KEY,
  tenant_id   text        NOT NULL CHECK (length(tenant_id) BETWEEN 1 AND 128),
  user_hash   bytea       NOT NULL CHECK (length(user_hash) BETWEEN 16 AND 64),
  ciphertext  bytea       NOT NULL,
  key_id      text        NOT NULL,
  embedding   vector({{embedding_dim}}) NOT NULL,
  embedder_id text        NOT NULL,
  metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
  version     integer     NOT NULL DEFAULT 1,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz
);

-- Scope lookups: exact search over one user's rows, listing newest first, erasure.
CREATE INDEX memory_chunks_scope_idx ON memory_chunks (tenant_id, user_hash, created_at DESC, id);
-- Approximate search for large scopes (filtered with hnsw.iterative_scan).
CREATE INDEX memory_chunks_embedding_hnsw_idx ON memory_chunks USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
-- The expiry sweep.
CREATE INDEX memory_chunks_expires_idx ON memory_chunks (expires_at) WHERE expires_at IS NOT NULL;

-- Row-level security, also for the owner; fails closed: with no scope set,
-- current_setting(..., true) is NULL or '' and no row compares equal.
-- The settings are read in scalar subqueries so they are evaluated once per
-- statement (an InitPlan), not once per row.
ALTER TABLE memory_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_chunks FORCE ROW LEVEL SECURITY;

CREATE POLICY memory_chunks_select ON memory_chunks FOR SELECT
  USING (tenant_id = (SELECT nullif(current_setting('relay.tenant_id', true), ''))
     AND user_hash = (SELECT decode(nullif(current_setting('relay.user_hash', true), ''), 'hex')));

CREATE POLICY memory_chunks_insert ON memory_chunks FOR INSERT
  WITH CHECK (tenant_id = (SELECT nullif(current_setting('relay.tenant_id', true), ''))
          AND user_hash = (SELECT decode(nullif(current_setting('relay.user_hash', true), ''), 'hex')));

CREATE POLICY memory_chunks_update ON memory_chunks FOR UPDATE
  USING (tenant_id = (SELECT nullif(current_setting('relay.tenant_id', true), ''))
     AND user_hash = (SELECT decode(nullif(current_setting('relay.user_hash', true), ''), 'hex')))
  WITH CHECK (tenant_id = (SELECT nullif(current_setting('relay.tenant_id', true), ''))
          AND user_hash = (SELECT decode(nullif(current_setting('relay.user_hash', true), ''), 'hex')));

CREATE POLICY memory_chunks_delete ON memory_chunks FOR DELETE
  USING (tenant_id = (SELECT nullif(current_setting('relay.tenant_id', true), ''))
     AND user_hash = (SELECT decode(nullif(current_setting('relay.user_hash', true), ''), 'hex')));

-- The application role gets the four row operations and nothing else.
REVOKE ALL ON memory_chunks FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON memory_chunks TO {{app_role}};
