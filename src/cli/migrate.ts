import { loadConfig } from '../config/index.ts';
import { migrateDown, migrateUp, migrationStatus } from '../store/index.ts';
import { withOwnerStore } from './owner-store.ts';
import { UsageError } from './usage-error.ts';

// Where the other commands import it from (main.ts imports usage-error.ts, which loads nothing).
export { UsageError };

/** `relay migrate up [--to N] | down [--to N] | status` against the configured store. */
export async function migrate(action: string | undefined, to: number | undefined): Promise<void> {
  const config = loadConfig();
  await withOwnerStore(config, 'migrations run as the owner login, not as DATABASE_URL', async (store) => {
    const vars = store.migrationVars;
    if (action === 'up') {
      const ran = await migrateUp(store.driver, vars, to);
      console.log(ran.length ? `applied ${ran.join(', ')}` : 'nothing to apply');
    } else if (action === 'down') {
      const ran = await migrateDown(store.driver, vars, to);
      console.log(ran.length ? `reverted ${ran.join(', ')}` : 'nothing to revert');
    } else if (action === 'status') {
      for (const s of await migrationStatus(store.driver)) {
        console.log(`${String(s.version).padStart(4, '0')} ${s.name.padEnd(24)} ${s.applied ? `applied ${s.appliedAt?.toISOString()}` : 'pending'}`);
      }
    } else {
      throw new UsageError('usage: relay migrate up [--to N] | down [--to N] | status');
    }
  });
}

