import { rename, writeFile } from 'node:fs/promises';
import { SingleBar, Presets } from 'cli-progress';
import { loadConfig, type Config } from '../config/index.ts';
import { decodeMasterKey, LocalKeyProvider, loadMasterKey, type KeyProvider } from '../crypto/index.ts';
import { checkMasterKey, ownerKeyring, resealTenant, rotateMasterKey, shredTenant, wrongMasterKeyMessage } from '../memory/index.ts';
import type { Store } from '../store/index.ts';
import { masterKeyFor } from './master-key.ts';
import { UsageError } from './usage-error.ts';
import { withOwnerStore } from './owner-store.ts';

export interface KeysArgs {
  tenant?: string;
  batchSize?: number;
  yes: boolean;
}

const USAGE = `usage: relay keys rotate --tenant T | reseal --tenant T [--batch-size 500] | shred --tenant T --yes | rotate-master`;

/**
 * The owner's store, migrated (embedded) and at the schema this release needs, once the master
 * key has proved to be the catalog's (a wrong one would mint keys no service can unwrap).
 * Each command's key change is announced to running services by a key event (docs/crypto.md).
 */
function withKeyStore<T>(config: Config, provider: KeyProvider | null, fn: (store: Store) => Promise<T>): Promise<T> {
  return withOwnerStore(config, 'key maintenance runs as the owner login', async (store) => {
    if (config.store.kind === 'pglite') await store.migrate();
    const ready = await store.readiness();
    if (!ready.ok) {
      throw new Error(`the schema is at version ${ready.schemaVersion}, this release needs ${ready.expectedVersion}${ready.error ? ` (${ready.error})` : ''}: run relay migrate up`);
    }
    if (provider && !(await checkMasterKey(store.driver, provider)).ok) throw new Error(wrongMasterKeyMessage(provider));
    return fn(store);
  });
}

function needTenant(args: KeysArgs): string {
  if (!args.tenant) throw new UsageError(`--tenant is required\n${USAGE}`);
  return args.tenant;
}

/** `relay keys …`: data key rotation, re-sealing, crypto-shredding and master key rotation. */
export async function keys(action: string | undefined, args: KeysArgs): Promise<void> {
  const config = loadConfig();
  switch (action) {
    case 'rotate': {
      const tenant = needTenant(args);
      const { provider } = masterKeyFor(config);
      await withKeyStore(config, provider, async (store) => {
        const version = await ownerKeyring(store.driver, provider).rotate(tenant);
        console.log(`tenant ${tenant}: new writes use data key version ${version}; older rows still open (relay keys reseal moves them)`);
      });
      return;
    }
    case 'reseal': {
      const tenant = needTenant(args);
      const { provider } = masterKeyFor(config);
      await withKeyStore(config, provider, async (store) => {
        const bar = new SingleBar({ format: 'reseal |{bar}| {value}/{total} rows, {skipped} skipped, eta {eta}s', stream: process.stderr }, Presets.shades_classic);
        let started = false;
        const report = await resealTenant(store.driver, ownerKeyring(store.driver, provider), tenant, {
          batchSize: args.batchSize,
          vectorTransform: config.vectorTransform,
          onProgress: (p) => {
            if (!started) {
              bar.start(p.total, 0, { skipped: 0 });
              started = true;
            }
            bar.update(p.done, { skipped: p.skipped });
          },
        });
        if (started) bar.stop();
        if (!report.target) {
          console.log(`tenant ${tenant} has no data key: nothing to reseal`);
          return;
        }
        const failures = Object.entries(report.failures).map(([r, n]) => `${n} ${r}`).join(', ');
        const space = config.vectorTransform ? `their vectors under its transform` : `their vectors in the model's own space (RELAY_VECTOR_TRANSFORM=off)`;
        console.log(`tenant ${tenant}: resealed ${report.done} rows under ${report.target}, ${space}${report.skipped ? `; ${report.skipped} did not open and were left as they are (${failures})` : ''}`);
        if (report.skipped) process.exitCode = 1;
      });
      return;
    }
    case 'shred': {
      const tenant = needTenant(args);
      if (!args.yes) {
        throw new UsageError(`keys shred destroys every key of tenant ${tenant}: nothing of it can be read again, by anyone. Add --yes to do it.`);
      }
      // Destroying keys needs no master key (and works when it was lost).
      await withKeyStore(config, null, async (store) => {
        const report = await shredTenant(store.driver, null, tenant);
        console.log(`tenant ${tenant}: destroyed ${report.keysDestroyed} keys, then deleted ${report.rowsDeleted} rows (unreadable since the keys went)`);
      });
      return;
    }
    case 'rotate-master': {
      const { master, provider } = masterKeyFor(config);
      const nextText = process.env.RELAY_NEW_MASTER_KEY;
      const nextFile = process.env.RELAY_NEW_MASTER_KEY_FILE;
      if (!nextText && !nextFile) {
        throw new UsageError('keys rotate-master needs the new key in RELAY_NEW_MASTER_KEY (base64 of 32 bytes) or RELAY_NEW_MASTER_KEY_FILE');
      }
      const nextKey = nextText
        ? decodeMasterKey(nextText, 'RELAY_NEW_MASTER_KEY')
        : loadMasterKey({ env: { RELAY_MASTER_KEY_FILE: nextFile } }).key;
      if (nextKey.equals(master.key)) throw new UsageError('the new master key is the current one');
      const next = new LocalKeyProvider(nextKey);
      // The embedded key file is the configuration: the new key is written beside it before any
      // key is rewrapped (so a crash never leaves keys wrapped under a key that exists nowhere),
      // and moved over it once all are.
      const embeddedFile = master.source === 'embedded_default' ? master.path : undefined;
      if (embeddedFile) await writeFile(`${embeddedFile}.next`, `${nextKey.toString('base64')}\n`, { mode: 0o600 });
      // The check is proved here, not by withKeyStore: a run that was cut short after the master key
      // check had moved to the new key (its last step) is finished by running it again.
      await withKeyStore(config, null, async (store) => {
        let n = 0;
        if ((await checkMasterKey(store.driver, provider)).ok) n = await rotateMasterKey(store.driver, provider, next);
        else if (!(await checkMasterKey(store.driver, next)).ok) throw new Error(wrongMasterKeyMessage(provider));
        if (embeddedFile) {
          await rename(`${embeddedFile}.next`, embeddedFile);
          console.log(`rewrapped ${n} tenant keys; ${embeddedFile} now holds the new master key`);
        } else {
          console.log(`rewrapped ${n} tenant keys; now configure the new master key (RELAY_MASTER_KEY / RELAY_MASTER_KEY_FILE) and retire the old one`);
        }
      });
      return;
    }
    default:
      throw new UsageError(USAGE);
  }
}
