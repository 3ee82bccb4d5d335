import { ScopedChunks } from './chunks.ts';
import { isRlsError } from './errors.ts';
import { currentVersion, latestVersion, migrateUp, type MigrationVars } from './migrations.ts';
import { scopeSettings, validateScope, type Scope } from './scope.ts';
import { ensureScopeIndexes, listScopeIndexes, scopeIndexName, type ScopeIndexOptions, type ScopeIndexReport } from './scope-indexes.ts';
import { ReadRouter, parseLsn, type ReadReason, type ReadRoutingOptions, type ReadTarget } from './read-routing.ts';
import { DEFAULT_SEARCH_TUNING, searchSettings, type SearchStrategy, type SearchTuning } from './search.ts';
import { READ_ONLY, type Driver, type PoolStats, type Settings, type SqlClient, type TransactionOptions } from './sql-client.ts';
import { sweepExpired, type SweepOptions, type SweepResult } from './sweep.ts';

const SCOPE_INDEX_REFRESH_MS = 60_000;

/** Hooks the store calls so metrics can count without the store knowing about them. */
export interface StoreObserver {
  /** The database refused a statement for reaching outside its scope. */
  rlsError?(): void;
  /** One vector search finished. */
  search?(seconds: number, strategy: SearchStrategy): void;
  /** A search returned fewer than min(k, matching rows). */
  underfilled?(): void;
  /** Where a read ran and why (see `ReadReason`). */
  readRoute?(target: ReadTarget, reason: ReadReason): void;
  /** The standby's replay lag at each probe; null while it does not answer. */
  standbyLag?(seconds: number | null): void;
}

/** Reads on a hot standby (RELAY_READ_DATABASE_URL). */
export interface ReadReplica {
  /** The standby (or HAProxy's replica port), as the application role. */
  driver: Driver;
  /** RELAY_READ_WAIT_MS, RELAY_MAX_STANDBY_LAG_MS and the probe's pace. */
  routing?: Omit<ReadRoutingOptions, 'onRoute' | 'onLag'>;
}

/**
 * A scoped transaction that only reads: query, get, list. It may run on the standby, and runs
 * read-only wherever it runs. `after`: a WAL position (from `commitPosition`) the read must see.
 */
export interface ReadIntent {
  after?: bigint;
}

export interface StoreOptions {
  /** Embedding dimensions D of `memory_chunks.embedding`. Default 384. */
  embeddingDim?: number;
  /** The application role. Default `app_user`. */
  appRole?: string;
  search?: Partial<SearchTuning>;
  observer?: StoreObserver;
  /** Tests only (RELAY_FAULTS ann_delay_ms): every search also sleeps this long in the database, inside its timing. */
  searchDelayMs?: number;
  /** Reads on a hot standby; without it every read runs on `driver`. */
  replica?: ReadReplica;
}

export interface Readiness {
  ok: boolean;
  schemaVersion: number;
  expectedVersion: number;
  error?: string;
}

/**
 * Memory rows behind row-level security. `withScope` is the only way to them:
 * it opens one transaction whose first statement sets the tenant and user.
 */
export class Store {
  readonly embeddingDim: number;
  readonly appRole: string;
  readonly tuning: Readonly<SearchTuning>;
  private readonly searchSettings: Settings;
  private readonly ownIndexSearchSettings: Settings;
  private ownIndexes: { names: ReadonlySet<string>; at: number } | undefined;
  private loadingOwnIndexes: Promise<ReadonlySet<string>> | undefined;
  private readonly router: ReadRouter | undefined;

  constructor(
    readonly driver: Driver,
    private readonly opts: StoreOptions = {},
  ) {
    this.embeddingDim = opts.embeddingDim ?? 384;
    this.appRole = opts.appRole ?? 'app_user';
    this.tuning = { ...DEFAULT_SEARCH_TUNING, ...opts.search };
    this.searchSettings = searchSettings(this.tuning);
    this.ownIndexSearchSettings = searchSettings(this.tuning, { ownIndex: true });
    const replica = opts.replica;
    if (replica) {
      const observer = opts.observer;
      this.router = new ReadRouter(driver, replica.driver, {
        ...replica.routing,
        onRoute: observer?.readRoute && ((target, reason) => observer.readRoute?.(target, reason)),
        onLag: observer?.standbyLag && ((seconds) => observer.standbyLag?.(seconds)),
      });
    }
  }

  /** Starts probing the standby, when there is one (openStore does). */
  async startReadRouting(): Promise<void> {
    await this.router?.start();
  }

  /** The standby's driver (RELAY_READ_DATABASE_URL), for reads that may fall back to it. */
  get standbyDriver(): Driver | undefined {
    return this.opts.replica?.driver;
  }

  /**
   * The primary's WAL position now: past the commit of every transaction that has returned.
   * A read given it (`ReadIntent.after`) sees all of them.
   */
  async commitPosition(): Promise<bigint> {
    const res = await this.driver.appTransaction([], (sql) => sql.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn'));
    const lsn = res.rows[0]?.lsn;
    if (!lsn) throw new Error('the database reported no WAL position');
    return parseLsn(lsn);
  }

  get migrationVars(): MigrationVars {
    return { embeddingDim: this.embeddingDim, appRole: this.appRole };
  }

  /** Applies pending migrations as the owner and checks that D matches the table. */
  async migrate(): Promise<number[]> {
    const ran = await migrateUp(this.driver, this.migrationVars);
    await this.checkDimensions();
    return ran;
  }

  /**
   * Runs `fn` with the chunks of one scope, in one transaction (cancelled by `opts.signal`). With
   * `opts.read` the transaction is read-only and, given a standby, may run there.
   */
  async withScope<T>(scope: Scope, fn: (chunks: ScopedChunks) => Promise<T>, opts: TransactionOptions & { read?: ReadIntent } = {}): Promise<T> {
    validateScope(scope);
    const observer = this.opts.observer;
    const onSearch = observer
      ? (seconds: number, strategy: SearchStrategy, underfilled: boolean) => {
          observer.search?.(seconds, strategy);
          if (underfilled) observer.underfilled?.();
        }
      : undefined;
    const own = (await this.scopeIndexNames()).has(scopeIndexName(scope.tenantId, scope.userHash));
    const settings = own ? this.ownIndexSearchSettings : this.searchSettings;
    const chunks = (sql: SqlClient) => fn(new ScopedChunks(sql, scope, this.embeddingDim, this.tuning, onSearch, this.opts.searchDelayMs));
    const { read, ...txOpts } = opts;
    if (!read) return this.run(this.driver, scope, settings, chunks, txOpts);
    // Read-only wherever it runs: a read that tried to write would fail on the primary as on a standby.
    const readSettings: Settings = [...settings, READ_ONLY];
    if (!this.router) {
      this.opts.observer?.readRoute?.('primary', 'no_standby');
      return this.run(this.driver, scope, readSettings, chunks, txOpts);
    }
    return this.router.run(read.after, (driver) => this.run(driver, scope, readSettings, chunks, txOpts), txOpts.signal);
  }

  /**
   * One round of the expiry sweep: deletes up to `batch` expired chunks and up to `batch`
   * idempotency keys older than a day, across tenants, through `relay_purge_expired` (the one
   * cross-tenant thing the application role may do; it returns counts, never rows).
   */
  async purgeExpired(batch = 1000): Promise<{ chunks: number; idempotencyKeys: number }> {
    const res = await this.driver.appTransaction([], (sql) =>
      sql.query<{ chunks: number; idempotency_keys: number }>('SELECT chunks, idempotency_keys FROM relay_purge_expired($1)', [batch]),
    );
    const row = res.rows[0];
    return { chunks: row?.chunks ?? 0, idempotencyKeys: row?.idempotency_keys ?? 0 };
  }

  /**
   * One turn of the expiry sweep for a fleet of replicas on one database: runs unless another
   * replica is sweeping or took the turn less than `opts.minGapMs` ago (see `sweepExpired`).
   */
  sweep(opts: SweepOptions = {}): Promise<SweepResult> {
    return sweepExpired(this.driver, opts);
  }

  /**
   * `relay db index-scopes` through this store (see `ensureScopeIndexes`); this store sees the
   * indexes it built or dropped at once, other processes within a minute.
   */
  async ensureScopeIndexes(opts: ScopeIndexOptions = {}): Promise<ScopeIndexReport> {
    try {
      return await ensureScopeIndexes(this.driver, opts);
    } finally {
      this.ownIndexes = undefined;
    }
  }

  /**
   * Which scopes have an HNSW index of their own (`relay db index-scopes`), read from the
   * catalog at most once a minute. A scope indexed since is searched correctly meanwhile, only
   * through the table-wide index. A failed read keeps what was known.
   */
  private scopeIndexNames(): Promise<ReadonlySet<string>> {
    if (this.ownIndexes && Date.now() - this.ownIndexes.at < SCOPE_INDEX_REFRESH_MS) return Promise.resolve(this.ownIndexes.names);
    this.loadingOwnIndexes ??= this.driver
      .appTransaction([], listScopeIndexes)
      .then(
        (indexes) => {
          this.ownIndexes = { names: new Set(indexes.filter((i) => i.valid).map((i) => i.name)), at: Date.now() };
          return this.ownIndexes.names;
        },
        () => this.ownIndexes?.names ?? new Set<string>(),
      )
      .finally(() => {
        this.loadingOwnIndexes = undefined;
      });
    return this.loadingOwnIndexes;
  }

  /**
   * Runs `fn` with a SQL client in one transaction whose first statement set `scope`.
   * For statements ScopedChunks does not offer; the policies apply all the same.
   */
  withScopeSql<T>(scope: Scope, fn: (sql: SqlClient) => Promise<T>): Promise<T> {
    return this.run(this.driver, scope, [], fn);
  }

  private async run<T>(driver: Driver, scope: Scope, extra: Settings, fn: (sql: SqlClient) => Promise<T>, opts?: TransactionOptions): Promise<T> {
    try {
      return await driver.appTransaction([...scopeSettings(scope), ...extra], fn, opts);
    } catch (err) {
      if (isRlsError(err)) this.opts.observer?.rlsError?.();
      throw err;
    }
  }

  /** Reachable, and the schema is at the version this code expects. */
  async readiness(): Promise<Readiness> {
    const expectedVersion = latestVersion();
    try {
      const res = await this.driver.appTransaction([], (sql) =>
        sql.query<{ v: number | null }>('SELECT max(version)::int AS v FROM relay_migrations'),
      );
      const schemaVersion = res.rows[0]?.v ?? 0;
      return { ok: schemaVersion === expectedVersion, schemaVersion, expectedVersion };
    } catch (err) {
      return { ok: false, schemaVersion: 0, expectedVersion, error: (err as Error).message };
    }
  }

  poolStats(): PoolStats {
    return this.driver.poolStats();
  }

  async close(): Promise<void> {
    await this.router?.close();
    await Promise.all([this.driver.close(), this.opts.replica?.driver.close()]);
  }

  private async checkDimensions(): Promise<void> {
    if ((await currentVersion(this.driver)) === 0) return;
    const actual = await tableEmbeddingDim(this.driver);
    if (actual !== this.embeddingDim) {
      throw new Error(`memory_chunks.embedding is vector(${actual}), but RELAY_EMBED_DIM is ${this.embeddingDim}: D is fixed when the store is created`);
    }
  }
}

/** D of `memory_chunks.embedding`, as the table declares it (pgvector's type modifier is D). */
export async function tableEmbeddingDim(driver: Driver): Promise<number> {
  const res = await driver.ownerTransaction((sql) =>
    sql.query<{ d: number }>(`SELECT atttypmod AS d FROM pg_attribute WHERE attrelid = 'memory_chunks'::regclass AND attname = 'embedding'`),
  );
  const d = res.rows[0]?.d;
  if (typeof d !== 'number' || d < 1) throw new Error('memory_chunks.embedding has no dimension');
  return d;
}
