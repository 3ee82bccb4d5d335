/**
 * The oracle of the isolation fuzz: what the store must hold after every operation, and so what
 * each principal may see. It knows nothing of the service; the fuzz compares every answer with it.
 */

/** Which embedder wrote a row: the fuzz switches between two (queries only find the active one's rows). */
export type EmbedderTag = 'A' | 'B';

export interface ModelRow {
  id: string;
  tenant: string;
  user: string;
  /** hex of the row's user_hash (the store's view of the user) */
  hash: string;
  text: string;
  /** unique per row, in its text and its metadata: a marker in an answer names the row it came from */
  marker: string;
  metadata: Record<string, string>;
  embedder: EmbedderTag;
  /** its ciphertext was moved (or it was moved): it must never open, and never be returned */
  tampered: boolean;
}

/** A metadata filter the fuzz sends, and its meaning (docs/filters.md). */
export type FilterSpec =
  | { op: 'eq'; key: string; value: string }
  | { op: 'ne'; key: string; value: string }
  | { op: 'in'; key: string; values: string[] };

export function filterJson(f: FilterSpec): Record<string, unknown> {
  switch (f.op) {
    case 'eq':
      return { [f.key]: f.value };
    case 'ne':
      return { [f.key]: { $ne: f.value } };
    case 'in':
      return { [f.key]: { $in: f.values } };
  }
}

export function filterMatches(f: FilterSpec, metadata: Record<string, string>): boolean {
  const has = Object.prototype.hasOwnProperty.call(metadata, f.key);
  const v = metadata[f.key];
  switch (f.op) {
    case 'eq':
      return has && v === f.value;
    case 'ne':
      return !(has && v === f.value);
    case 'in':
      return has && f.values.includes(v!);
  }
}

/** Markers look like `MK-000042-KM`; no hostile string can contain one. */
export const MARKER = /MK-\d{6}-KM/g;

export const scopeKey = (tenant: string, user: string) => `${tenant}\u0000${user}`;

export class Oracle {
  readonly rows = new Map<string, ModelRow>();
  /** Every id the service ever gave out (deleted ones too), to aim operations at. */
  readonly everIds: string[] = [];
  /** Idempotency keys per scope: the body they were first used with and the ids answered. */
  readonly idem = new Map<string, { body: string; ids: string[] }>();
  active: EmbedderTag = 'A';
  private seq = 0;

  nextMarker(): string {
    return `MK-${String(++this.seq).padStart(6, '0')}-KM`;
  }

  add(row: ModelRow): void {
    this.rows.set(row.id, row);
    this.everIds.push(row.id);
  }

  /** Every row of the scope (what raw SQL inside it sees), tampered ones included. */
  inScope(tenant: string, user: string): ModelRow[] {
    return [...this.rows.values()].filter((r) => r.tenant === tenant && r.user === user);
  }

  /** What the API may return to the scope: its rows that open. */
  readable(tenant: string, user: string): ModelRow[] {
    return this.inScope(tenant, user).filter((r) => !r.tampered);
  }

  /** What a query of the scope may find: readable, by the active embedder, matching the filter. */
  searchable(tenant: string, user: string, filter: FilterSpec | null): ModelRow[] {
    return this.readable(tenant, user).filter((r) => r.embedder === this.active && (!filter || filterMatches(filter, r.metadata)));
  }

  /** Rows a query's search may meet that will not open (they take candidate slots). */
  unopenableCandidates(tenant: string, user: string, filter: FilterSpec | null): ModelRow[] {
    return this.inScope(tenant, user).filter((r) => r.tampered && r.embedder === this.active && (!filter || filterMatches(filter, r.metadata)));
  }

  /** Rows whose stored (tenant, user_hash) are exactly these. */
  atHash(tenant: string, hashHex: string): ModelRow[] {
    return [...this.rows.values()].filter((r) => r.tenant === tenant && r.hash === hashHex);
  }

  eraseScope(tenant: string, user: string): number {
    const gone = this.inScope(tenant, user);
    for (const r of gone) this.rows.delete(r.id);
    const prefix = `${scopeKey(tenant, user)}\u0000`;
    for (const k of [...this.idem.keys()]) if (k.startsWith(prefix)) this.idem.delete(k);
    return gone.length;
  }

  /** Markers that `allowed` rows carry; any other marker in an answer is a leak. */
  static markersOf(rows: readonly ModelRow[]): Set<string> {
    return new Set(rows.map((r) => r.marker));
  }
}
