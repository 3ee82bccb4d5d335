import { isConnectionError, sqlState } from './errors.ts';
import type { Driver } from './sql-client.ts';

/** Where a read ran. */
export type ReadTarget = 'standby' | 'primary';

/**
 * Why it ran there (`relay_read_route_total{target,reason}`). On the standby: `no_token` (the
 * read asked for no position), `caught_up` (the standby had replayed the position already),
 * `waited` (it had within RELAY_READ_WAIT_MS). On the primary: `no_standby` (no
 * RELAY_READ_DATABASE_URL), `standby_down` (its last probe failed), `standby_lagging` (replay lag
 * beyond RELAY_MAX_STANDBY_LAG_MS), `wait_timeout` (the position was not replayed in time),
 * `standby_failed` (the read failed on the standby for a reason of the standby's and ran again).
 */
export type ReadReason = 'no_token' | 'caught_up' | 'waited' | 'no_standby' | 'standby_down' | 'standby_lagging' | 'wait_timeout' | 'standby_failed';

export const READ_ROUTES: ReadonlyArray<{ target: ReadTarget; reason: ReadReason }> = [
  { target: 'standby', reason: 'no_token' },
  { target: 'standby', reason: 'caught_up' },
  { target: 'standby', reason: 'waited' },
  { target: 'primary', reason: 'no_standby' },
  { target: 'primary', reason: 'standby_down' },
  { target: 'primary', reason: 'standby_lagging' },
  { target: 'primary', reason: 'wait_timeout' },
  { target: 'primary', reason: 'standby_failed' },
];

/** The reasons a read runs on the standby (the rest send it to the primary). */
const STANDBY_REASONS: ReadonlySet<ReadReason> = new Set(READ_ROUTES.filter((r) => r.target === 'standby').map((r) => r.reason));

export interface ReadRoutingOptions {
  /** RELAY_READ_WAIT_MS: how long a read with a position waits for the standby to replay it. Default 200. */
  waitMs?: number;
  /** RELAY_MAX_STANDBY_LAG_MS: a standby further behind than this serves no read. Default 5000. */
  maxLagMs?: number;
  /** How often the standby is probed for its lag and replay position. Default 1000. */
  probeMs?: number;
  /** A probe that has not answered by then counts as failed. Default 2000. */
  probeTimeoutMs?: number;
  /**
   * Where the probes run: a pool of their own on the standby, so that reads holding every
   * connection of the standby's pool cannot make a probe late and the standby look down.
   * Default: the standby's driver.
   */
  probeDriver?: Driver;
  onRoute?(target: ReadTarget, reason: ReadReason): void;
  /** Each probe's replay lag in seconds; null when the standby did not answer. */
  onLag?(seconds: number | null): void;
}

/** A WAL position (`pg_lsn`, text `16/B374D848`) as a number: the two halves, 32 bits each. */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!m) throw new RangeError(`not a WAL position: ${text}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** The server's position: on a standby what it has replayed, on a primary what it has written. */
const POSITION = 'CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END';
/**
 * Replay lag as PostgreSQL's monitoring guides measure it: 0 when everything received is
 * replayed (an idle primary is no lag), else the age of the last replayed commit.
 */
const PROBE = `SELECT (${POSITION})::text AS position,
  CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
       ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))
  END::float8 AS lag_s`;

/** Recovery conflicts: a standby cancels a read whose rows replay must remove or lock. */
const STANDBY_STATES = new Set(['40001', '57P04', '57P01', '57P02', '57P03']);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/**
 * Sends reads to a hot standby (RELAY_READ_DATABASE_URL) and keeps them honest: a read that
 * carries a WAL position (a Relay-Consistency token) runs there only once the standby has
 * replayed it, and any doubt about the standby (down, lagging, not caught up in time, failing
 * the read) sends the read to the primary instead. The standby is probed in the background; a
 * read never waits on a probe except to catch up with its own position.
 */
export class ReadRouter {
  private readonly waitMs: number;
  private readonly maxLagS: number;
  private readonly probeMs: number;
  private readonly probeTimeoutMs: number;
  private up = false;
  /** Probes failed in a row: one is not enough to call the standby down (a read that fails there is). */
  private failedProbes = 0;
  private lagS = 0;
  /** The highest position the standby was seen to have replayed. */
  private replayed = -1n;
  private refreshing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly primary: Driver,
    private readonly standby: Driver,
    private readonly opts: ReadRoutingOptions = {},
  ) {
    this.waitMs = opts.waitMs ?? 200;
    this.maxLagS = (opts.maxLagMs ?? 5000) / 1000;
    this.probeMs = opts.probeMs ?? 1000;
    this.probeTimeoutMs = opts.probeTimeoutMs ?? 2000;
  }

  /** Probes once (so the first reads already know the standby) and then every `probeMs`. */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.probeMs);
    this.timer.unref();
  }

  /**
   * Runs `read` on the standby when it is fit for it (replayed `after`, if given), else on the
   * primary, and counts the choice. A read that fails on the standby for the standby's sake
   * (connection lost, recovery conflict) runs again on the primary; any other error is the
   * read's own and is thrown.
   */
  async run<T>(after: bigint | undefined, read: (driver: Driver) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const reason = await this.choose(after, signal);
    if (!STANDBY_REASONS.has(reason)) {
      this.opts.onRoute?.('primary', reason);
      return read(this.primary);
    }
    try {
      const result = await read(this.standby);
      this.opts.onRoute?.('standby', reason);
      return result;
    } catch (err) {
      if (signal?.aborted || !this.standbysFault(err)) throw err;
      if (isConnectionError(err) && this.up) {
        this.up = false;
        this.opts.onLag?.(null);
      }
      this.opts.onRoute?.('primary', 'standby_failed');
      return read(this.primary);
    }
  }

  private standbysFault(err: unknown): boolean {
    const state = sqlState(err);
    return isConnectionError(err) || (state !== undefined && STANDBY_STATES.has(state));
  }

  private async choose(after: bigint | undefined, signal?: AbortSignal): Promise<ReadReason> {
    if (!this.up) return 'standby_down';
    if (this.lagS > this.maxLagS) return 'standby_lagging';
    if (after === undefined) return 'no_token';
    if (this.replayed >= after) return 'caught_up';
    const deadline = Date.now() + this.waitMs;
    let pause = 2;
    while (Date.now() < deadline && !signal?.aborted) {
      await this.refresh();
      if (!this.up) return 'standby_down';
      if (this.replayed >= after) return 'waited';
      await sleep(Math.min(pause, Math.max(0, deadline - Date.now())));
      pause = Math.min(pause * 2, 20);
    }
    return 'wait_timeout';
  }

  /** One probe at a time; callers that arrive while one runs share it. */
  private refresh(): Promise<void> {
    this.refreshing ??= this.probe().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async probe(): Promise<void> {
    if (this.closed) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the standby did not answer a probe within ${this.probeTimeoutMs} ms`)), this.probeTimeoutMs);
    });
    try {
      const probe = this.opts.probeDriver ?? this.standby;
      const res = await Promise.race([probe.appTransaction([], (sql) => sql.query<{ position: string | null; lag_s: number }>(PROBE)), late]);
      const row = res.rows[0];
      if (!row?.position) throw new Error('the standby reported no replay position');
      const position = parseLsn(row.position);
      // A standby replaced by another (a failover, a rebuild) may be behind what this one saw.
      this.replayed = position;
      this.lagS = Number(row.lag_s);
      this.up = true;
      this.failedProbes = 0;
      this.opts.onLag?.(this.lagS);
    } catch {
      // The first probe decides at once (nothing is known yet); later, two failures in a row.
      if (++this.failedProbes >= 2 || this.replayed < 0n) {
        this.up = false;
        this.opts.onLag?.(null);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.refreshing?.catch(() => undefined);
    await this.opts.probeDriver?.close();
  }
}
