/**
 * Metadata filters of the query API: untrusted JSON is parsed into a small AST
 * (`parseFilter`), which compiles into a parameterised predicate over a jsonb
 * object column (`compileFilter`). The language is specified in docs/filters.md.
 */

export type Scalar = string | number | boolean | null;

export type RangeOp = 'gt' | 'gte' | 'lt' | 'lte';

/** One test of one top-level metadata key. */
export type Condition =
  | { readonly op: 'eq' | 'ne'; readonly key: string; readonly value: Scalar }
  | { readonly op: 'in' | 'nin'; readonly key: string; readonly values: readonly Scalar[] }
  | { readonly op: RangeOp; readonly key: string; readonly value: number | string }
  | { readonly op: 'exists'; readonly key: string; readonly value: boolean };

/** A parsed, validated filter. Several conditions at one level of the JSON become an `and`. */
export type MetadataFilter = Condition | { readonly op: 'and' | 'or'; readonly filters: readonly MetadataFilter[] };

/** The bounds parseFilter enforces (lengths in Unicode code points). */
export const FILTER_LIMITS = {
  keyChars: 128,
  stringChars: 1024,
  inValues: 100,
  branches: 50,
  depth: 8,
  conditions: 200,
} as const;

export class FilterError extends Error {
  readonly code = 'invalid_filter';
  /** Where in the filter the problem is, e.g. `filter.$or[1].price`. */
  readonly path: string;

  constructor(path: string, reason: string) {
    super(`${path}: ${reason}`);
    this.name = 'FilterError';
    this.path = path;
  }
}

const OPERATORS = {
  $eq: 'eq',
  $ne: 'ne',
  $in: 'in',
  $nin: 'nin',
  $gt: 'gt',
  $gte: 'gte',
  $lt: 'lt',
  $lte: 'lte',
  $exists: 'exists',
} as const;
type OperatorName = keyof typeof OPERATORS;
const OPERATOR_LIST = Object.keys(OPERATORS).join(', ');

function isOperator(name: string): name is OperatorName {
  return Object.hasOwn(OPERATORS, name);
}

interface ParseState {
  conditions: number;
}

/**
 * Validates `input` (typically a parsed JSON body) as a filter.
 * @throws FilterError naming the JSON path of the first problem found.
 */
export function parseFilter(input: unknown): MetadataFilter {
  return parseObject(input, 'filter', 0, { conditions: 0 });
}

function parseObject(input: unknown, path: string, depth: number, state: ParseState): MetadataFilter {
  if (!isPlainObject(input)) throw new FilterError(path, `a filter must be an object, got ${describe(input)}`);
  const keys = Object.keys(input);
  if (keys.length === 0) throw new FilterError(path, 'a filter must not be empty');
  const parts: MetadataFilter[] = [];
  for (const key of keys) {
    const value = input[key];
    if (key === '$and' || key === '$or') {
      parts.push(parseBranches(key, value, `${path}.${key}`, depth + 1, state));
    } else if (key.startsWith('$')) {
      const hint = isOperator(key)
        ? ` here: comparison operators go inside a key, e.g. {"price": {"${key}": …}}`
        : ' (only $and and $or may stand beside metadata keys)';
      throw new FilterError(path, `unknown operator ${label(key)}${hint}`);
    } else {
      const keyPath = path + pathSegment(key);
      checkKey(key, keyPath);
      parts.push(...parseField(key, value, keyPath, state));
    }
  }
  return parts.length === 1 ? parts[0]! : { op: 'and', filters: parts };
}

function parseBranches(name: '$and' | '$or', value: unknown, path: string, depth: number, state: ParseState): MetadataFilter {
  if (depth > FILTER_LIMITS.depth) throw new FilterError(path, `filters nest deeper than ${FILTER_LIMITS.depth} levels of $and/$or`);
  if (!Array.isArray(value) || value.length === 0 || value.length > FILTER_LIMITS.branches) {
    throw new FilterError(path, `${name} takes a non-empty array of at most ${FILTER_LIMITS.branches} filters, got ${describe(value)}`);
  }
  const filters = Array.from(value, (v: unknown, i) => parseObject(v, `${path}[${i}]`, depth, state));
  return { op: name === '$and' ? 'and' : 'or', filters };
}

function parseField(key: string, value: unknown, path: string, state: ParseState): Condition[] {
  if (!isPlainObject(value)) {
    if (Array.isArray(value)) {
      throw new FilterError(path, 'an array cannot be compared; use {"$in": [...]} to match any of several values');
    }
    count(state, path);
    return [{ op: 'eq', key, value: parseScalar(value, path) }];
  }
  const names = Object.keys(value);
  if (names.length === 0) throw new FilterError(path, `an operator object must not be empty (operators: ${OPERATOR_LIST})`);
  const out: Condition[] = [];
  for (const name of names) {
    if (!isOperator(name)) {
      throw new FilterError(
        path,
        name === '$and' || name === '$or'
          ? `unknown operator ${name} here: $and and $or combine whole filters, e.g. {"${name}": [{"a": 1}, {"b": 2}]}`
          : name.startsWith('$')
            ? `unknown operator ${label(name)}`
            : `${label(name)} is not an operator; an object cannot be compared (operators: ${OPERATOR_LIST})`,
      );
    }
    count(state, path);
    out.push(parseOperator(key, OPERATORS[name], value[name], `${path}.${name}`));
  }
  return out;
}

function parseOperator(key: string, op: Condition['op'], operand: unknown, path: string): Condition {
  switch (op) {
    case 'eq':
    case 'ne':
      return { op, key, value: parseScalar(operand, path) };
    case 'in':
    case 'nin': {
      if (!Array.isArray(operand) || operand.length === 0 || operand.length > FILTER_LIMITS.inValues) {
        throw new FilterError(path, `takes a non-empty array of at most ${FILTER_LIMITS.inValues} values, got ${describe(operand)}`);
      }
      return { op, key, values: Array.from(operand, (v: unknown, i) => parseScalar(v, `${path}[${i}]`)) };
    }
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte':
      if (typeof operand !== 'number' && typeof operand !== 'string') {
        throw new FilterError(path, `a range takes a number or a string, got ${describe(operand)}`);
      }
      parseScalar(operand, path);
      return { op, key, value: operand };
    case 'exists':
      if (typeof operand !== 'boolean') throw new FilterError(path, `takes true or false, got ${describe(operand)}`);
      return { op, key, value: operand };
  }
}

function parseScalar(value: unknown, path: string): Scalar {
  if (value === null || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new FilterError(path, 'a number must be finite');
    return value;
  }
  if (typeof value === 'string') {
    if (tooLong(value, FILTER_LIMITS.stringChars)) {
      throw new FilterError(path, `a string may have at most ${FILTER_LIMITS.stringChars} characters`);
    }
    // PostgreSQL's jsonb refuses both, so no stored metadata can hold them: refusing here
    // keeps the statement from failing at run time.
    if (value.includes('\0')) throw new FilterError(path, 'a string must not contain a NUL character');
    if (LONE_SURROGATE.test(value)) throw new FilterError(path, 'a string must be valid Unicode (it has a lone surrogate)');
    return value;
  }
  if (typeof value === 'object') {
    throw new FilterError(path, `${describe(value)} cannot be compared; use a string, number, boolean or null`);
  }
  throw new FilterError(path, `expected a string, number, boolean or null, got ${describe(value)}`);
}

const LONE_SURROGATE = /\p{Cs}/u;
const CONTROL = /\p{Cc}/u;

function checkKey(key: string, path: string): void {
  if (key.length === 0 || tooLong(key, FILTER_LIMITS.keyChars)) {
    throw new FilterError(path, `a metadata key must have 1..${FILTER_LIMITS.keyChars} characters`);
  }
  if (CONTROL.test(key)) throw new FilterError(path, 'a metadata key must not contain control characters');
  if (LONE_SURROGATE.test(key)) throw new FilterError(path, 'a metadata key must be valid Unicode (it has a lone surrogate)');
}

function count(state: ParseState, path: string): void {
  state.conditions += 1;
  if (state.conditions > FILTER_LIMITS.conditions) {
    throw new FilterError(path, `a filter may hold at most ${FILTER_LIMITS.conditions} conditions`);
  }
}

/** Whether `s` has more than `max` code points; counts them only when the length leaves it open. */
function tooLong(s: string, max: number): boolean {
  if (s.length <= max) return false;
  return s.length > 2 * max || [...s].length > max;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return v.length === 0 ? 'an empty array' : `an array of ${v.length}`;
  if (typeof v === 'object') return isPlainObject(v) ? 'an object' : 'a non-JSON object';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return `a ${typeof v}`;
  return typeof v;
}

const PLAIN_NAME = /^\$?[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** A name as it can be shown in a message: plain names as they are, others quoted and cut short. */
function label(name: string): string {
  if (PLAIN_NAME.test(name)) return name;
  const cut = name.length > 40 ? `${name.slice(0, 40)}…` : name;
  return JSON.stringify(cut);
}

/** `.price` for plain keys, `["a.b"]` for keys a dot path would misrepresent. */
function pathSegment(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(key) ? `.${key}` : `[${label(key)}]`;
}

// ---------------------------------------------------------------------------
// Compilation

/** A column reference: an identifier, optionally qualified (`t.metadata`). */
const COLUMN = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/;

const RANGE_SQL: Record<RangeOp, string> = { gt: '>', gte: '>=', lt: '<', lte: '<=' };

/**
 * A boolean SQL expression over `column` (default 'metadata'); parameters numbered from
 * firstParam ($firstParam, $firstParam+1, …); every key and value travels as a parameter,
 * never inside the SQL text.
 *
 * The text depends only on the filter's shape (its and/or structure, operators and
 * `$exists` flags), so equal shapes share one prepared statement. The expression is never
 * NULL and raises no error for any row, provided `column` is a non-null jsonb object.
 * `$eq`, `$ne`, `$in`, `$nin` and `$exists` use `@>` / `?`, which a GIN index on the
 * column serves.
 */
export function compileFilter(filter: MetadataFilter, firstParam: number, column = 'metadata'): { sql: string; params: unknown[] } {
  if (!Number.isSafeInteger(firstParam) || firstParam < 1) throw new RangeError(`compileFilter: firstParam must be a positive integer, got ${firstParam}`);
  if (!COLUMN.test(column)) throw new RangeError(`compileFilter: not a plain column reference: ${JSON.stringify(column)}`);
  const params: string[] = [];
  const bind = (value: string, type: 'jsonb' | 'text'): string => {
    params.push(value);
    return `$${firstParam + params.length - 1}::${type}`;
  };
  const m = column;

  const emit = (f: MetadataFilter): string => {
    switch (f.op) {
      case 'and':
      case 'or':
        return `(${f.filters.map(emit).join(f.op === 'and' ? ' AND ' : ' OR ')})`;
      case 'eq':
        return `${m} @> ${bind(pairJson(f.key, f.value), 'jsonb')}`;
      case 'ne':
        return `NOT (${m} @> ${bind(pairJson(f.key, f.value), 'jsonb')})`;
      case 'in':
      case 'nin': {
        // One {key: value} object per candidate: containment is JSON equality for scalars,
        // a missing key never matches, and the array's length stays out of the SQL text.
        const candidates = `[${f.values.map((v) => pairJson(f.key, v)).join(',')}]`;
        const any = `${m} @> ANY (ARRAY(SELECT jsonb_array_elements(${bind(candidates, 'jsonb')})))`;
        return f.op === 'in' ? any : `NOT (${any})`;
      }
      case 'exists': {
        const has = `${m} ? ${bind(f.key, 'text')}`;
        return f.value ? has : `NOT (${has})`;
      }
      case 'gt':
      case 'gte':
      case 'lt':
      case 'lte': {
        const k = bind(f.key, 'text');
        const v = bind(JSON.stringify(f.value), 'jsonb');
        const cmp = RANGE_SQL[f.op];
        // Both branches compare only values of the operand's own JSON type, so jsonb's
        // cross-type ordering never leaks in; no branch can raise. Strings compare by code
        // point (COLLATE "C"), whatever the database's default collation; a missing key
        // (typeof NULL) falls to ELSE false, keeping the result non-null.
        return (
          `CASE jsonb_typeof(${m} -> ${k}) ` +
          `WHEN 'number' THEN jsonb_typeof(${v}) = 'number' AND (${m} -> ${k}) ${cmp} ${v} ` +
          `WHEN 'string' THEN jsonb_typeof(${v}) = 'string' AND (${m} ->> ${k}) COLLATE "C" ${cmp} (${v} #>> '{}') ` +
          `ELSE false END`
        );
      }
    }
  };

  const sql = emit(filter);
  return { sql: filter.op === 'and' || filter.op === 'or' ? sql : `(${sql})`, params };
}

/** `{"key": value}` as JSON text, built by hand so a key like `__proto__` stays an ordinary key. */
function pairJson(key: string, value: Scalar): string {
  return `{${JSON.stringify(key)}:${JSON.stringify(value)}}`;
}
