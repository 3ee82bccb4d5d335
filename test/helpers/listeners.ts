import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import pg from 'pg';

/**
 * The local ports of the TCP connections process `pid` holds to `serverPort` (Linux: its socket
 * fds matched with /proc/net/tcp*). PostgreSQL shows the same port as `client_port`.
 */
export function clientPortsOf(pid: number, serverPort: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || !inodes.has(cols[9]!)) continue;
      const local = parseInt(cols[1]!.split(':')[1]!, 16);
      const remote = parseInt(cols[2]!.split(':')[1]!, 16);
      if (remote === serverPort) ports.push(local);
    }
  }
  return ports;
}

/**
 * Terminates the key events' listening connections (application name `relay-memory-listen`) of
 * the given `relay serve` processes, and only theirs: other suites' services on the same database
 * keep theirs. Returns how many were terminated.
 */
export async function terminateListeners(adminUrl: string, dbUrl: string, pids: readonly number[]): Promise<number> {
  const serverPort = Number(new URL(dbUrl).port || 5432);
  const ports = pids.flatMap((pid) => clientPortsOf(pid, serverPort));
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const res = await admin.query<{ ok: boolean }>(
      "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'relay-memory-listen' AND datname = $1 AND client_port = ANY($2::int[])",
      [new URL(dbUrl).pathname.slice(1), ports],
    );
    return res.rows.filter((r) => r.ok).length;
  } finally {
    await admin.end();
  }
}
