-- Everything 0002 made, in reverse order. Reverting destroys every wrapped key: whatever
-- was sealed under them can no longer be opened.
DROP POLICY IF EXISTS tenant_shreds_select ON tenant_shreds;
DROP POLICY IF EXISTS tenant_keys_insert ON tenant_keys;
DROP POLICY IF EXISTS tenant_keys_select ON tenant_keys;
DROP TABLE IF EXISTS tenant_shreds;
DROP TABLE IF EXISTS tenant_keys;
