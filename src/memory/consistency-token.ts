import { timingSafeEqual } from 'node:crypto';
import type { Keyring } from '../crypto/index.ts';

/**
 * The Relay-Consistency token: a WAL position the primary had reached when a write was
 * answered, for the reads that must see that write. Opaque to clients (docs/api.md); base64url of
 *
 *   format 0x01 (1) | WAL position (uint64 BE, 8) | tag (16)
 *
 * The tag is the first 16 bytes of `keyring.tag(tenant, 'consistency-token', format | tenant |
 * position)`: under the tenant's HMAC key, like the list cursor, so every replica accepts the
 * tokens of every other, and a client cannot forge a far-future position that would make each of
 * its reads wait out RELAY_READ_WAIT_MS (nor take another tenant's token).
 */
const FORMAT = 1;
const TAG_BYTES = 16;
const TOKEN_BYTES = 1 + 8 + TAG_BYTES;
const TOKEN_TEXT = new RegExp(`^[A-Za-z0-9_-]{${Math.ceil((TOKEN_BYTES * 4) / 3)}}$`);
const PURPOSE = 'consistency-token';

/** A token this API did not give out to this tenant; the HTTP layer answers 400 `invalid_consistency_token`. */
export class InvalidConsistencyTokenError extends Error {
  constructor() {
    super('Relay-Consistency is not a token this API gave out');
  }
}

async function tagOf(keyring: Keyring, tenantId: string, position: Buffer): Promise<Buffer> {
  const tenant = Buffer.from(tenantId, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(tenant.length);
  return (await keyring.tag(tenantId, PURPOSE, Buffer.concat([Buffer.of(FORMAT), length, tenant, position]))).subarray(0, TAG_BYTES);
}

export async function encodeConsistencyToken(keyring: Keyring, tenantId: string, lsn: bigint): Promise<string> {
  const position = Buffer.alloc(8);
  position.writeBigUInt64BE(lsn);
  return Buffer.concat([Buffer.of(FORMAT), position, await tagOf(keyring, tenantId, position)]).toString('base64url');
}

/** The WAL position of a token `encodeConsistencyToken` gave out for `tenantId`; anything else throws. */
export async function decodeConsistencyToken(keyring: Keyring, tenantId: string, token: string): Promise<bigint> {
  if (!TOKEN_TEXT.test(token)) throw new InvalidConsistencyTokenError();
  const bytes = Buffer.from(token, 'base64url');
  // base64url has several spellings of the last character's unused bits: only ours is accepted.
  if (bytes.length !== TOKEN_BYTES || bytes.toString('base64url') !== token || bytes[0] !== FORMAT) throw new InvalidConsistencyTokenError();
  const position = bytes.subarray(1, 9);
  const expected = await tagOf(keyring, tenantId, position);
  if (!timingSafeEqual(expected, bytes.subarray(9))) throw new InvalidConsistencyTokenError();
  return position.readBigUInt64BE(0);
}
