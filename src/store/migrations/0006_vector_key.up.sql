-- Vectors at rest under a keyed orthogonal transform (docs/security.md, "Vectors at rest").
-- `vector_key` names the data key version whose transform (salted with the row's user) the
-- embedding is under; NULL: the model's own space (rows written before this migration, or
-- with RELAY_VECTOR_TRANSFORM=off). `relay keys reseal` brings rows to the setting in force.
ALTER TABLE memory_chunks ADD COLUMN vector_key integer CHECK (vector_key > 0);

-- A search asks whether the scope holds vectors under more than one key (after `keys rotate`,
-- before `keys reseal`): a few probes of this index, whatever the scope's size.
CREATE INDEX memory_chunks_vector_key_idx ON memory_chunks (tenant_id, user_hash, vector_key);
