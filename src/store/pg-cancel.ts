import pg from 'pg';

/** What a connected pg client knows about the server it talks to (pg keeps the key off its types). */
interface CancelTarget {
  host: string;
  port: number;
  processID: number | null;
  secretKey: number | null;
}

/** pg's wire connection; `cancel` writes a CancelRequest (not in @types/pg). */
interface WireConnection {
  connect(port: number | string, host?: string): void;
  cancel(processID: number, secretKey: number): void;
  on(event: 'connect' | 'error' | 'end', listener: () => void): void;
  stream: { destroy(): void };
}

/**
 * Cancels the statement running on `client`'s connection with the protocol's CancelRequest: a
 * new socket to the same host and port carrying the backend key the server gave that connection
 * at login, no login of its own. Unlike `pg_cancel_backend(pid)` this works through PgBouncer:
 * the key a pooler hands out is its own, and it forwards the request to whichever server
 * connection that client holds at that moment (none: dropped). Sent as pg's `Client#cancel`
 * sends it, on pg's own wire code. Best effort: a failure leaves the statement to finish or hit
 * its timeout.
 */
export function sendCancelRequest(client: pg.PoolClient | pg.Client): void {
  const target = client as unknown as CancelTarget;
  const { processID, secretKey } = target;
  if (typeof processID !== 'number' || typeof secretKey !== 'number') return;
  const con = new pg.Connection() as unknown as WireConnection;
  const done = setTimeout(() => con.stream.destroy(), 5000);
  done.unref();
  con.on('error', () => undefined);
  con.on('end', () => clearTimeout(done));
  con.on('connect', () => con.cancel(processID, secretKey));
  // A host starting with / is the folder of a Unix socket, as pg connects to it.
  if (target.host.startsWith('/')) con.connect(`${target.host}/.s.PGSQL.${target.port}`);
  else con.connect(target.port, target.host);
}
