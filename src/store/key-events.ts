/**
 * Key events: a key change made by one process (`relay keys rotate|reseal|shred|rotate-master`,
 * `relay reindex`) reaches every running service at once, so none keeps sealing under an old
 * data key or serving a shredded tenant from its cache. PostgreSQL LISTEN/NOTIFY on
 * `relay_key_events`; `pg_notify` is transactional, so an event is delivered when (and only if)
 * the change it announces commits. The payload names the tenant and the kind of change, nothing
 * secret. On PGlite (one process) the same NOTIFY travels in-process.
 */
import type { Driver, Listening, SqlClient } from './sql-client.ts';

export const KEY_EVENTS_CHANNEL = 'relay_key_events';

export type KeyEventKind = 'rotate' | 'reseal' | 'shred' | 'rotate_master' | 'reindex';
export const KEY_EVENT_KINDS: readonly KeyEventKind[] = ['rotate', 'reseal', 'shred', 'rotate_master', 'reindex'];
const KINDS: ReadonlySet<string> = new Set<KeyEventKind>(KEY_EVENT_KINDS);

export interface KeyEvent {
  /** null: every tenant (master key rotation). */
  tenantId: string | null;
  kind: KeyEventKind;
}

/** Publishes `event` in the caller's transaction: delivered on commit, dropped on rollback. */
export async function publishKeyEvent(sql: SqlClient, event: KeyEvent): Promise<void> {
  await sql.query('SELECT pg_notify($1, $2)', [KEY_EVENTS_CHANNEL, JSON.stringify({ tenant: event.tenantId, kind: event.kind })]);
}

/** The event in a payload, or null when it is not one of ours (ignored). */
export function parseKeyEvent(payload: string): KeyEvent | null {
  try {
    const v = JSON.parse(payload) as { tenant?: unknown; kind?: unknown };
    if (typeof v.kind !== 'string' || !KINDS.has(v.kind)) return null;
    if (v.tenant !== null && (typeof v.tenant !== 'string' || v.tenant.length === 0)) return null;
    return { tenantId: v.tenant, kind: v.kind as KeyEventKind };
  } catch {
    return null;
  }
}

export interface KeyEventListener {
  /** `changed(tenant)` for every event (null: every tenant); `missed()` after each (re)connection. */
  changed(tenantId: string | null): void;
  missed(): void;
}

export interface KeyEventsOptions {
  /** First wait before reconnecting, ms; doubles up to `maxBackoffMs`. Default 100. */
  minBackoffMs?: number;
  /** Default 5000. */
  maxBackoffMs?: number;
  /** Told when the listening connection is lost and when it is back (no secrets in either). */
  log?: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
  /** Every event as it arrives (metrics, tests). */
  onEvent?: (event: KeyEvent) => void;
}

/**
 * One listening connection for the whole process, kept up: when it drops it reconnects with
 * backoff, and since events may have been missed meanwhile, each (re)connection tells every
 * subscriber `missed()`. `live` is true only while listening. Implements the keyring's
 * `KeyChangeFeed`.
 */
export class KeyEvents {
  #live = false;
  #closed = false;
  #listening: Listening | null = null;
  #timer: NodeJS.Timeout | undefined;
  #backoff: number;
  #connects = 0;
  readonly #listeners = new Set<KeyEventListener>();
  readonly #min: number;
  readonly #max: number;

  private constructor(
    private readonly driver: Driver,
    private readonly opts: KeyEventsOptions,
  ) {
    this.#min = opts.minBackoffMs ?? 100;
    this.#max = opts.maxBackoffMs ?? 5000;
    this.#backoff = this.#min;
  }

  /** Starts listening; resolves after the first attempt (a failed one keeps retrying in the background). */
  static async start(driver: Driver, opts: KeyEventsOptions = {}): Promise<KeyEvents> {
    const events = new KeyEvents(driver, opts);
    await events.#connect();
    return events;
  }

  get live(): boolean {
    return this.#live;
  }

  /** Times a LISTEN took effect (1 after a clean start; more after reconnections). */
  get connects(): number {
    return this.#connects;
  }

  /** The server backend that listens now (null on PGlite or while down): tests terminate it. */
  get backendPid(): number | null {
    return this.#listening?.backendPid ?? null;
  }

  subscribe(listener: KeyEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#live = false;
    clearTimeout(this.#timer);
    await this.#listening?.close();
    this.#listening = null;
  }

  #emit(fn: (l: KeyEventListener) => void): void {
    for (const l of this.#listeners) {
      try {
        fn(l);
      } catch {
        // a subscriber's failure must not stop the others
      }
    }
  }

  #onPayload = (payload: string): void => {
    const event = parseKeyEvent(payload);
    if (!event) return;
    this.opts.onEvent?.(event);
    this.#emit((l) => l.changed(event.tenantId));
  };

  async #connect(): Promise<void> {
    if (this.#closed) return;
    let listening: Listening;
    try {
      listening = await this.driver.listen(KEY_EVENTS_CHANNEL, this.#onPayload);
    } catch (err) {
      this.opts.log?.warn({ err: { code: (err as { code?: string }).code, message: (err as Error).message } }, 'key events: cannot listen; cached keys are used only within the grace until it can');
      this.#retry();
      return;
    }
    if (this.#closed) {
      await listening.close();
      return;
    }
    this.#listening = listening;
    this.#live = true;
    this.#connects++;
    this.#backoff = this.#min;
    // Listening first, then forget: anything changed from here on is announced.
    this.#emit((l) => l.missed());
    if (this.#connects > 1) this.opts.log?.info({}, 'key events: listening again; every cached key was dropped');
    void listening.closed.then((cause) => {
      if (this.#closed || this.#listening !== listening) return;
      this.#live = false;
      this.#listening = null;
      this.opts.log?.warn({ err: cause ? { code: (cause as { code?: string }).code, message: cause.message } : undefined }, 'key events: the listening connection was lost; reconnecting');
      this.#retry();
    });
  }

  #retry(): void {
    if (this.#closed) return;
    const wait = this.#backoff;
    this.#backoff = Math.min(this.#max, this.#backoff * 2);
    this.#timer = setTimeout(() => void this.#connect(), wait);
    this.#timer.unref();
  }
}

/** Publishes `event` in a transaction of its own, as the maintenance login (a reseal's start, a reindex's end). */
export async function announceKeyEvent(driver: Driver, event: KeyEvent): Promise<void> {
  await driver.ownerTransaction((sql) => publishKeyEvent(sql, event));
}
