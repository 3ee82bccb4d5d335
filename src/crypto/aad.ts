/**
 * Canonical encoding of the context a value is sealed for. Every field is length-prefixed
 * (4-byte big-endian byte length, then the bytes), in a fixed order, after the format
 * version, so no two different contexts encode to the same bytes: ("ab","c") and ("a","bc")
 * differ in their length prefixes.
 *
 *   version (1) | len(tenantId) (4) | tenantId UTF-8 | len(userHash) (4) | userHash
 *               | len(chunkId) (4) | chunkId UTF-8 | len(purpose) (4) | purpose UTF-8
 */

/** What a value is sealed for: moving it to another tenant, user, chunk or purpose breaks it. */
export interface SealContext {
  tenantId: string;
  /** `hmacUser(tenantId, userId)`, the pseudonym stored as `user_hash`. */
  userHash: Buffer;
  chunkId: string;
  /** What the bytes are, e.g. `chunk.text`; a value sealed for one purpose does not open as another. */
  purpose: string;
}

const MAX_FIELD = 0xffff_ffff;

interface WellFormed {
  isWellFormed(): boolean;
}

/**
 * UTF-8 length of a context string. A string with a lone surrogate would be written as
 * U+FFFD, so two different strings could share one encoding; such strings are refused.
 * ASCII (ids, UUIDs, purposes) takes a fast path: this runs on every seal and open.
 */
function utf8Length(name: string, value: unknown): number {
  if (typeof value !== 'string') throw new TypeError(`seal context: ${name} must be a string`);
  const n = value.length;
  let i = 0;
  while (i < n && value.charCodeAt(i) < 0x80) i++;
  if (i === n) return n;
  if (!(value as unknown as WellFormed).isWellFormed()) {
    throw new TypeError(`seal context: ${name} is not well-formed Unicode (lone surrogate)`);
  }
  return Buffer.byteLength(value, 'utf8');
}

/** Byte length of `encodeContext(version, ctx)`; validates the context. */
export function contextLength(ctx: SealContext): number {
  if (ctx === null || typeof ctx !== 'object') throw new TypeError('seal context must be an object');
  const t = utf8Length('tenantId', ctx.tenantId);
  if (t === 0) throw new TypeError('seal context: tenantId must not be empty');
  if (!Buffer.isBuffer(ctx.userHash)) throw new TypeError('seal context: userHash must be a Buffer');
  const c = utf8Length('chunkId', ctx.chunkId);
  const p = utf8Length('purpose', ctx.purpose);
  if (t > MAX_FIELD || c > MAX_FIELD || p > MAX_FIELD || ctx.userHash.length > MAX_FIELD) {
    throw new RangeError('seal context: a field is longer than 2^32-1 bytes');
  }
  return 1 + 16 + t + ctx.userHash.length + c + p;
}

/** Writes the encoding into `out` at `offset` (exactly `contextLength(ctx)` bytes); returns the end. */
export function writeContext(out: Buffer, offset: number, version: number, ctx: SealContext): number {
  let o = out.writeUInt8(version, offset);
  o = writeString(out, o, ctx.tenantId);
  o = out.writeUInt32BE(ctx.userHash.length, o);
  o += ctx.userHash.copy(out, o);
  o = writeString(out, o, ctx.chunkId);
  return writeString(out, o, ctx.purpose);
}

function writeString(out: Buffer, offset: number, value: string): number {
  const n = value.length;
  const at = offset + 4;
  let i = 0;
  for (let c = 0; i < n && (c = value.charCodeAt(i)) < 0x80; i++) out[at + i] = c;
  const len = i === n ? n : out.write(value, at, 'utf8');
  out.writeUInt32BE(len, offset);
  return at + len;
}

/** The canonical context encoding on its own (the sealed format appends it to its header as GCM AAD). */
export function encodeContext(version: number, ctx: SealContext): Buffer {
  const out = Buffer.allocUnsafe(contextLength(ctx));
  writeContext(out, 0, version, ctx);
  return out;
}

/** Which tenant key a wrapped key is bound to (the AAD of key wrapping). */
export interface KeyBinding {
  tenantId: string;
  kind: string;
  version: number;
}

const KEY_AAD_LABEL = 'relay/tenant-key/v1';

/**
 * AAD for wrapping a tenant key: the label, tenant id and kind length-prefixed, then the
 * version as uint32 BE. A wrapped key copied to another tenant, kind or version does not unwrap.
 */
export function encodeKeyAad(b: KeyBinding): Buffer {
  utf8Length('tenantId', b.tenantId);
  utf8Length('kind', b.kind);
  const parts = [KEY_AAD_LABEL, b.tenantId, b.kind].map((s) => Buffer.from(s, 'utf8'));
  const out = Buffer.allocUnsafe(parts.reduce((n, p) => n + 4 + p.length, 0) + 4);
  let o = 0;
  for (const p of parts) {
    o = out.writeUInt32BE(p.length, o);
    o += p.copy(out, o);
  }
  out.writeUInt32BE(b.version, o);
  return out;
}

/**
 * The inverse of `encodeKeyAad`, for KMS adapters that want the binding as a structured
 * encryption context (AWS KMS `EncryptionContext`, Vault transit `context`).
 */
export function decodeKeyAad(aad: Buffer): KeyBinding {
  let o = 0;
  const read = (): string => {
    if (o + 4 > aad.length) throw new RangeError('not a tenant key AAD');
    const n = aad.readUInt32BE(o);
    if (o + 4 + n > aad.length) throw new RangeError('not a tenant key AAD');
    const s = aad.toString('utf8', o + 4, o + 4 + n);
    o += 4 + n;
    return s;
  };
  if (read() !== KEY_AAD_LABEL) throw new RangeError('not a tenant key AAD');
  const tenantId = read();
  const kind = read();
  if (o + 4 !== aad.length) throw new RangeError('not a tenant key AAD');
  return { tenantId, kind, version: aad.readUInt32BE(o) };
}
