-- Vectors at rest under a keyed orthogonal transform (docs/security.md, "Vectors at rest").
-- `vector_key` names the data key version whose transform (salted with the row's user) the
-- embedding is under; NULL: the model's own space (rows written before this migration, or
-- with RELAY_VECTOR_TRANSFORM=off). `relay keys reseal` brings rows to the setting in force.
ALTER TABLE memory_chunks ADD COLUMN vector_key integer CHECK (vector_key > 0);

-- A search asks whether the scope holds vectors under more than one key (after `keys rotate`,
-- before `keys reseal`): a few probes of this index, whatever the scope's size.
CREATE INDEX memory_chunks_vector_key_idx ON memory_chunks (tenant_id, user_hash, vector_key);

-- Whether the scope holds a vector outside the space `p_key` names: the first and the last
-- entry of the scope in the index above (NULLs sort last), two descents whatever the scope's
-- size. An empty scope counts as mixed unless p_key is null. A function so that its two
-- statements are planned once per server connection: behind PgBouncer in transaction mode
-- every search statement is the unnamed one and planned anew, and two more subqueries to plan
-- cost a third of the throughput there. SECURITY INVOKER: the caller's row-level security holds.
CREATE FUNCTION relay_vector_keys_mixed(p_tenant text, p_user bytea, p_key integer) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
  k integer;
BEGIN
  SELECT vector_key INTO k FROM public.memory_chunks
   WHERE tenant_id = p_tenant AND user_hash = p_user ORDER BY vector_key ASC NULLS LAST LIMIT 1;
  IF NOT FOUND THEN
    RETURN p_key IS NOT NULL;
  END IF;
  IF k IS DISTINCT FROM p_key THEN
    RETURN true;
  END IF;
  SELECT vector_key INTO k FROM public.memory_chunks
   WHERE tenant_id = p_tenant AND user_hash = p_user ORDER BY vector_key DESC NULLS FIRST LIMIT 1;
  RETURN k IS DISTINCT FROM p_key;
END $$;
REVOKE ALL ON FUNCTION relay_vector_keys_mixed(text, bytea, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION relay_vector_keys_mixed(text, bytea, integer) TO {{app_role}};
