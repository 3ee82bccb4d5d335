import { randomBytes } from 'node:crypto';
import type { Config } from '../config/index.ts';
import { ConfigError } from '../config/index.ts';
import { LocalKeyProvider, loadMasterKey, type MasterKey } from '../crypto/index.ts';

/**
 * The master key for this configuration. The embedded store may make its development key
 * file (`<RELAY_DATA_DIR>/master.key`, with a loud warning); a server store refuses to: a key
 * lying on the app server next to nothing it protects would only hide a missing setting.
 */
export function masterKeyFor(config: Config, warn: (message: string) => void = (m) => console.error(`relay: ${m}`)): { master: MasterKey; provider: LocalKeyProvider } {
  const configured = Boolean(process.env.RELAY_MASTER_KEY || process.env.RELAY_MASTER_KEY_FILE);
  if (config.store.kind === 'pg' && !configured) {
    throw new ConfigError('a server store needs RELAY_MASTER_KEY (base64 of 32 bytes) or RELAY_MASTER_KEY_FILE; try: openssl rand -base64 32');
  }
  if (config.store.kind === 'pglite' && config.store.dataDir === 'memory://' && !configured) {
    // Data that dies with the process: a key that dies with it too.
    const master: MasterKey = { key: randomBytes(32), source: 'embedded_default', created: true, warnings: [] };
    return { master, provider: new LocalKeyProvider(master.key) };
  }
  const master = loadMasterKey({ dataDir: config.store.kind === 'pglite' ? config.store.dataDir : undefined, warn });
  return { master, provider: new LocalKeyProvider(master.key) };
}
