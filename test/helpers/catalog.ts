import type { SqlClient } from '../../src/store/index.ts';

/**
 * Everything the migrations shape in the public schema, as sorted text rows:
 * tables and columns, indexes, constraints, policies, RLS flags, grants, functions, triggers.
 */
export interface Catalog {
  tables: string[];
  columns: string[];
  indexes: string[];
  constraints: string[];
  policies: string[];
  grants: string[];
  functions: string[];
  triggers: string[];
}

export async function catalogSnapshot(sql: SqlClient): Promise<Catalog> {
  const rows = async (q: string) => (await sql.query<{ r: string }>(q)).rows.map((x) => x.r).sort();
  return {
    tables: await rows(`SELECT c.relname || ' ' || c.relkind::text || ' rls=' || c.relrowsecurity || ' force=' || c.relforcerowsecurity AS r
                        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')`),
    columns: await rows(`SELECT table_name || '.' || column_name || ' ' || format_type(a.atttypid, a.atttypmod) || ' null=' || is_nullable || ' default=' || coalesce(column_default, '') AS r
                         FROM information_schema.columns col
                         JOIN pg_attribute a ON a.attrelid = (quote_ident(col.table_name))::regclass AND a.attname = col.column_name
                         WHERE table_schema = 'public'`),
    indexes: await rows(`SELECT indexdef AS r FROM pg_indexes WHERE schemaname = 'public'`),
    constraints: await rows(`SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) AS r FROM pg_constraint
                             WHERE connamespace = 'public'::regnamespace`),
    policies: await rows(`SELECT tablename || ' ' || policyname || ' ' || permissive || ' ' || array_to_string(roles, ',') || ' ' || cmd
                            || ' using=' || coalesce(qual, '') || ' check=' || coalesce(with_check, '') AS r
                          FROM pg_policies WHERE schemaname = 'public'`),
    grants: await rows(`SELECT table_name || ' ' || grantee || ' ' || privilege_type AS r FROM information_schema.role_table_grants
                        WHERE table_schema = 'public'`),
    functions: await rows(`SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS r FROM pg_proc p
                           WHERE p.pronamespace = 'public'::regnamespace
                             AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')`),
    triggers: await rows(`SELECT tgrelid::regclass::text || ' ' || tgname AS r FROM pg_trigger WHERE NOT tgisinternal`),
  };
}
