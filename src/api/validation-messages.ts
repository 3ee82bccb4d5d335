import type { z } from 'zod';

/**
 * zod's issues in the API's words: what the field must be, never zod's own vocabulary
 * ("received NaN", "Invalid input"). Messages a schema gives itself (refinements, `error`
 * params) take precedence; this is zod's per-parse error map for the rest.
 */

type RawIssue = z.core.$ZodRawIssue;

const KEY_CHARS = 64;

/** What a JSON value is, for "must be a string, not a number". */
export function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return Number.isNaN(value) ? 'not a number' : 'a number';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'boolean') return 'true or false';
  if (typeof value === 'string') return 'a string';
  return typeof value;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  object: 'an object',
  array: 'an array',
  record: 'an object',
  null: 'null',
};

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

const quoted = (key: string) => JSON.stringify(key.slice(0, KEY_CHARS));

/** The fields an object schema takes, for "unknown field" (none for a non-object). */
function fieldsOf(inst: unknown): string[] {
  const shape = (inst as { _zod?: { def?: { shape?: Record<string, unknown> } } } | undefined)?._zod?.def?.shape;
  return shape ? Object.keys(shape) : [];
}

/** A record's key bounds, for "keys must be 1 to 128 characters". */
function keyBounds(inst: unknown): string {
  const key = (inst as { keyType?: { minLength?: number | null; maxLength?: number | null } } | undefined)?.keyType;
  const min = key?.minLength ?? 0;
  const max = key?.maxLength;
  return max == null ? 'keys are not valid' : `keys must be ${min} to ${max} characters`;
}

export function inProjectWords(issue: RawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      return `must be ${EXPECTED[issue.expected] ?? issue.expected}, not ${kindOf(issue.input)}`;
    case 'too_small': {
      const min = Number(issue.minimum);
      if (issue.origin === 'string') return min <= 1 ? 'must not be empty' : `must be at least ${plural(min, 'character')}`;
      if (issue.origin === 'array' || issue.origin === 'set') return `must have at least ${plural(min, 'item')}`;
      return `must be at least ${min}`;
    }
    case 'too_big': {
      const max = Number(issue.maximum);
      if (issue.origin === 'string') return `must be at most ${plural(max, 'character')}`;
      if (issue.origin === 'array' || issue.origin === 'set') return `must have at most ${plural(max, 'item')}`;
      return `must be at most ${max}`;
    }
    case 'unrecognized_keys': {
      const allowed = fieldsOf(issue.inst);
      const names = issue.keys.slice(0, 3).map(quoted).join(', ');
      return `unknown field${issue.keys.length === 1 ? '' : 's'} ${names}${allowed.length ? ` (allowed: ${allowed.join(', ')})` : ''}`;
    }
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'invalid_key':
      return keyBounds(issue.inst);
    case 'invalid_format':
      return 'is not in the expected format';
    case 'invalid_union':
      // Only JsonValue is a union, and JSON gives it anything but a number out of range (1e400).
      return typeof issue.input === 'number' ? 'numbers must be finite' : 'is not a value this field takes';
    default:
      return undefined;
  }
}

/** `metadata.topic`, `chunks[2]`, `metadata["a b"]`; keys cut to 64 characters. */
export function fieldName(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else {
      const key = String(seg);
      out += /^[A-Za-z_$][\w$-]{0,63}$/.test(key) ? `${out ? '.' : ''}${key}` : `[${quoted(key)}]`;
    }
  }
  return out;
}

/** The body as a whole is not an object (a JSON array, string, null, or no body). */
export function bodyNotObject(input: unknown): string {
  return input === undefined ? 'a JSON object body is required' : `the body must be a JSON object, not ${kindOf(input)}`;
}
