-- Two guards of the key hierarchy (docs/crypto.md).
--
-- 1. The master key check: one value wrapped by the master key, so a process can prove that the
--    master key it was given is the one that wraps this database's key catalog before it serves
--    (`relay serve` refuses to start, /readyz says `master_key: wrong key`). Migrations cannot
--    make it (SQL has no master key): the first `relay serve` or `relay keys …` after this
--    migration writes it with the key it was given, and `relay keys rotate-master` rewraps it.
CREATE TABLE master_key_check (
  id          smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  provider_id text        NOT NULL CHECK (length(provider_id) BETWEEN 1 AND 200),
  wrapped     bytea       NOT NULL CHECK (length(wrapped) BETWEEN 16 AND 4096),
  created_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON master_key_check FROM PUBLIC;
-- The service may write it once (a database migrated before the check existed); only the owner
-- replaces it (master key rotation).
GRANT SELECT, INSERT ON master_key_check TO {{app_role}};

-- 2. No row is ever written for a shredded tenant, whatever a process still has cached. Every
--    insert (and every new ciphertext) first takes the tenant's lock shared, then looks for the
--    shred; `keys shred` takes the same lock exclusively before it marks the tenant. So a write
--    either commits before the shred (and the shred's row deletion removes it) or sees the shred
--    and fails with SQLSTATE RL410. Lock class 0x524b4559 ("RKEY"), key hashtext(tenant_id):
--    src/store/key-repository.ts takes the same.
CREATE FUNCTION relay_refuse_shredded() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(1380664665, hashtext(NEW.tenant_id));
  -- A new statement, so a new snapshot (READ COMMITTED): it sees a shred committed while we waited.
  IF EXISTS (SELECT 1 FROM public.tenant_shreds s WHERE s.tenant_id = NEW.tenant_id) THEN
    RAISE EXCEPTION 'the tenant was shredded: nothing may be written for it' USING ERRCODE = 'RL410';
  END IF;
  RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION relay_refuse_shredded() FROM PUBLIC;

CREATE TRIGGER memory_chunks_refuse_shredded BEFORE INSERT OR UPDATE OF ciphertext ON memory_chunks
  FOR EACH ROW EXECUTE FUNCTION relay_refuse_shredded();

-- Erasure in a shredded tenant: its HMAC key is gone, so no user's rows can be told apart any
-- more, and none of them opens. Deletes up to `batch` rows (and the idempotency keys) left of
-- the tenant the transaction is scoped to, and only when that tenant was shredded; returns the
-- count of rows deleted, never rows.
CREATE FUNCTION relay_purge_shredded(batch integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  tenant text := nullif(current_setting('relay.tenant_id', true), '');
  deleted integer;
BEGIN
  IF batch IS NULL OR batch < 1 OR batch > 100000 THEN
    RAISE EXCEPTION 'batch must be in 1..100000';
  END IF;
  IF tenant IS NULL OR NOT EXISTS (SELECT 1 FROM public.tenant_shreds s WHERE s.tenant_id = tenant) THEN
    RETURN 0;
  END IF;
  DELETE FROM public.memory_chunks WHERE id IN (
    SELECT id FROM public.memory_chunks WHERE tenant_id = tenant LIMIT batch);
  GET DIAGNOSTICS deleted = ROW_COUNT;
  DELETE FROM public.idempotency_keys WHERE tenant_id = tenant;
  RETURN deleted;
END $$;
REVOKE ALL ON FUNCTION relay_purge_shredded(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION relay_purge_shredded(integer) TO {{app_role}};
