-- The key catalog (docs/crypto.md): each tenant's data keys and HMAC key, wrapped by the
-- master key with (tenant, kind, version) as AAD. Never a plain key in this table.
CREATE TABLE tenant_keys (
  tenant_id   text        NOT NULL CHECK (length(tenant_id) BETWEEN 1 AND 128),
  kind        text        NOT NULL CHECK (kind IN ('data', 'hmac')),
  version     integer     NOT NULL CHECK (version >= 1),
  wrapped     bytea       NOT NULL CHECK (length(wrapped) BETWEEN 16 AND 4096),
  provider_id text        NOT NULL CHECK (length(provider_id) BETWEEN 1 AND 200),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, kind, version)
);

-- Tenants whose keys were destroyed: no key may be made for them again by accident.
CREATE TABLE tenant_shreds (
  tenant_id   text        PRIMARY KEY CHECK (length(tenant_id) BETWEEN 1 AND 128),
  shredded_at timestamptz NOT NULL DEFAULT now()
);

-- The service sees and adds keys of the tenant its transaction is scoped to, and nothing
-- else: no update, no delete (rotation adds a version; shredding is the owner's).
ALTER TABLE tenant_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant_shreds ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_shreds FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_keys_select ON tenant_keys FOR SELECT
  USING (tenant_id = (SELECT nullif(current_setting('relay.tenant_id', true), '')));

CREATE POLICY tenant_keys_insert ON tenant_keys FOR INSERT
  WITH CHECK (tenant_id = (SELECT nullif(current_setting('relay.tenant_id', true), ''))
          AND NOT EXISTS (SELECT 1 FROM tenant_shreds s WHERE s.tenant_id = tenant_keys.tenant_id));

CREATE POLICY tenant_shreds_select ON tenant_shreds FOR SELECT
  USING (tenant_id = (SELECT nullif(current_setting('relay.tenant_id', true), '')));

REVOKE ALL ON tenant_keys FROM PUBLIC;
REVOKE ALL ON tenant_shreds FROM PUBLIC;
GRANT SELECT, INSERT ON tenant_keys TO {{app_role}};
GRANT SELECT ON tenant_shreds TO {{app_role}};
