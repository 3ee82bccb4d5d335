import { setupDatabase } from '../store/index.ts';

export interface DbSetupArgs {
  adminUrl: string;
  database: string;
  ownerRole?: string;
  appRole?: string;
  embeddingDim?: number;
}

/**
 * `relay db setup`: prints `DATABASE_URL=…` and `RELAY_MIGRATE_URL=…` on stdout (and
 * nothing else there), so `eval "$(relay db setup …)"` or `>> .env` works; progress goes to stderr.
 * Passwords come from RELAY_APP_PASSWORD / RELAY_OWNER_PASSWORD, never from flags (shell history).
 */
export async function dbSetup(args: DbSetupArgs): Promise<void> {
  const result = await setupDatabase({
    ...args,
    appPassword: process.env.RELAY_APP_PASSWORD || undefined,
    ownerPassword: process.env.RELAY_OWNER_PASSWORD || undefined,
    log: (line) => console.error(line),
  });
  for (const change of result.changes) console.error(`db setup: ${change}`);
  if (result.changes.length === 0) console.error('db setup: everything was already in place');
  console.log(`DATABASE_URL=${result.databaseUrl}`);
  console.log(`RELAY_MIGRATE_URL=${result.migrateUrl}`);
}
