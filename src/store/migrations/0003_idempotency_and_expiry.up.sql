-- Idempotency keys of the write API: a retried POST /api/v1/memory (same Idempotency-Key, same
-- scope) gets the first response back and writes nothing twice. The key row is inserted in the
-- same transaction as the chunks, so a racing copy waits on the primary key until the first
-- commits (then replays it) or rolls back (then writes itself).
CREATE TABLE idempotency_keys (
  tenant_id    text        NOT NULL CHECK (length(tenant_id) BETWEEN 1 AND 128),
  user_hash    bytea       NOT NULL CHECK (length(user_hash) BETWEEN 16 AND 64),
  -- sha256 of the client's key: its text is the client's business, and may be long.
  key_hash     bytea       NOT NULL CHECK (length(key_hash) = 32),
  -- sha256 of the canonical request, to refuse the same key with a different body.
  request_hash bytea       NOT NULL CHECK (length(request_hash) = 32),
  response     jsonb       NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_hash, key_hash)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;

CREATE POLICY idempotency_keys_select ON idempotency_keys FOR SELECT
  USING (tenant_id = (SELECT nullif(current_setting('relay.tenant_id', true), ''))
     AND user_hash = (SELECT decode(nullif(current_setting('relay.user_hash', true), ''), 'hex')));

CREATE POLICY idempotency_keys_insert ON idempotency_keys FOR INSERT
  WITH CHECK (tenant_id = (SELECT nullif(current_setting('relay.tenant_id', true), ''))
          AND user_hash = (SELECT decode(nullif(current_setting('relay.user_hash', true), ''), 'hex')));

-- Erasure of a user removes their keys too (the stored responses name chunk ids).
CREATE POLICY idempotency_keys_delete ON idempotency_keys FOR DELETE
  USING (tenant_id = (SELECT nullif(current_setting('relay.tenant_id', true), ''))
     AND user_hash = (SELECT decode(nullif(current_setting('relay.user_hash', true), ''), 'hex')));

REVOKE ALL ON idempotency_keys FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON idempotency_keys TO {{app_role}};

-- The expiry sweep. Expired chunks are already invisible to every read (each statement
-- filters on expires_at); this removes them for good, across tenants. The service runs as
-- app_user, which RLS confines to one scope, so the sweep is a function owned by the
-- migration owner (SECURITY DEFINER) that can do exactly one thing: delete rows whose time
-- is up, at most `batch` of each kind per call. It returns counts, never rows.
CREATE FUNCTION relay_purge_expired(batch integer, OUT chunks integer, OUT idempotency_keys integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF batch IS NULL OR batch < 1 OR batch > 100000 THEN
    RAISE EXCEPTION 'batch must be in 1..100000';
  END IF;
  DELETE FROM public.memory_chunks WHERE id IN (
    SELECT id FROM public.memory_chunks WHERE expires_at <= now() LIMIT batch);
  GET DIAGNOSTICS chunks = ROW_COUNT;
  DELETE FROM public.idempotency_keys k USING (
    SELECT tenant_id, user_hash, key_hash FROM public.idempotency_keys
     WHERE created_at < now() - interval '24 hours' LIMIT batch) old
   WHERE (k.tenant_id, k.user_hash, k.key_hash) = (old.tenant_id, old.user_hash, old.key_hash);
  GET DIAGNOSTICS idempotency_keys = ROW_COUNT;
END $$;

REVOKE ALL ON FUNCTION relay_purge_expired(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION relay_purge_expired(integer) TO {{app_role}};
