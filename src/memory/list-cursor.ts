import { timingSafeEqual } from 'node:crypto';
import type { Keyring } from '../crypto/index.ts';
import type { ListPosition, Scope } from '../store/index.ts';

/**
 * The list cursor: where a page ended, authenticated for the scope it was given to. Opaque to
 * clients (docs/api.md); base64url of
 *
 *   format 0x01 (1) | created_at, µs since 1970 (int64 BE, 8) | chunk id (16) | tag (16)
 *
 * The tag is the first 16 bytes of `keyring.tag(tenant, 'list-cursor', format | tenant | user
 * hash | position)`: under the tenant's HMAC key, so every replica of a deployment, on either
 * store, accepts the cursors of every other, and a cursor edited, forged or given to another
 * user or tenant is refused before its position is looked at.
 */
const FORMAT = 1;
const TAG_BYTES = 16;
const POSITION_BYTES = 8 + 16;
const CURSOR_BYTES = 1 + POSITION_BYTES + TAG_BYTES;
/** base64url without padding of CURSOR_BYTES (41) bytes. */
const CURSOR_CHARS = Math.ceil((CURSOR_BYTES * 4) / 3);
const CURSOR_TEXT = new RegExp(`^[A-Za-z0-9_-]{${CURSOR_CHARS}}$`);
const PURPOSE = 'list-cursor';
/** 0001-01-01 and 10000-01-01 UTC in µs: every timestamp PostgreSQL can take lies between. */
const MIN_US = -62_135_596_800_000_000n;
const MAX_US = 253_402_300_800_000_000n;

/** A cursor this API did not give out to this scope; the HTTP layer answers 400 `invalid_cursor`. */
export class InvalidCursorError extends Error {
  constructor() {
    super('cursor is not one this API gave out');
  }
}

const UUID_HEX = /^[0-9a-f]{32}$/;

function positionBytes(pos: ListPosition): Buffer {
  const hex = pos.id.replaceAll('-', '').toLowerCase();
  if (!UUID_HEX.test(hex)) throw new RangeError('list position id is not a UUID');
  const out = Buffer.alloc(POSITION_BYTES);
  out.writeBigInt64BE(pos.createdAtUs, 0);
  Buffer.from(hex, 'hex').copy(out, 8);
  return out;
}

function uuidText(bytes: Buffer): string {
  const h = bytes.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

async function tagOf(keyring: Keyring, scope: Scope, position: Buffer): Promise<Buffer> {
  const tenant = Buffer.from(scope.tenantId, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(tenant.length);
  const data = Buffer.concat([Buffer.of(FORMAT), length, tenant, scope.userHash, position]);
  return (await keyring.tag(scope.tenantId, PURPOSE, data)).subarray(0, TAG_BYTES);
}

/** The cursor for `pos`, good only for `scope`. */
export async function encodeCursor(keyring: Keyring, scope: Scope, pos: ListPosition): Promise<string> {
  const position = positionBytes(pos);
  const tag = await tagOf(keyring, scope, position);
  return Buffer.concat([Buffer.of(FORMAT), position, tag]).toString('base64url');
}

/** The position of a cursor `encodeCursor` gave out for `scope`; anything else throws `InvalidCursorError`. */
export async function decodeCursor(keyring: Keyring, scope: Scope, cursor: string): Promise<ListPosition> {
  if (!CURSOR_TEXT.test(cursor)) throw new InvalidCursorError();
  const bytes = Buffer.from(cursor, 'base64url');
  // base64url has several spellings of the last character's unused bits: only ours is accepted.
  if (bytes.length !== CURSOR_BYTES || bytes.toString('base64url') !== cursor || bytes[0] !== FORMAT) throw new InvalidCursorError();
  const position = bytes.subarray(1, 1 + POSITION_BYTES);
  const expected = await tagOf(keyring, scope, position);
  if (!timingSafeEqual(expected, bytes.subarray(1 + POSITION_BYTES))) throw new InvalidCursorError();
  // Authentic, and still checked: a position outside what the database can take is never sent to it.
  const createdAtUs = position.readBigInt64BE(0);
  if (createdAtUs < MIN_US || createdAtUs >= MAX_US) throw new InvalidCursorError();
  return { createdAtUs, id: uuidText(position.subarray(8)) };
}
