/**
 * The latest Relay-Consistency token this client was given (docs/scaling.md): every write,
 * patch, delete and erasure answers one; every read sends the newest back, so a client's reads
 * see its own writes even when they are served by a standby.
 *
 * The token is opaque to callers. The client reads the WAL position inside (bytes 1–8 after the
 * format byte; the service's own format) only to keep the newest of two answers that arrive out
 * of order; a token it cannot read simply replaces the one it had.
 */
export class ConsistencyTracker {
  private token: string | undefined;
  private position: bigint | null = null;

  constructor(initial?: string) {
    if (initial !== undefined) this.observe(initial);
  }

  get latest(): string | undefined {
    return this.token;
  }

  observe(token: string): void {
    const position = positionOf(token);
    if (position !== null && this.position !== null && position < this.position) return;
    this.token = token;
    this.position = position;
  }
}

/** The WAL position of a format-1 token (25 bytes in base64url), or null. */
function positionOf(token: string): bigint | null {
  if (!/^[A-Za-z0-9_-]{34}$/.test(token)) return null;
  const base64 = token.replaceAll('-', '+').replaceAll('_', '/') + '==';
  let bytes: string;
  try {
    bytes = atob(base64);
  } catch {
    return null;
  }
  if (bytes.length !== 25 || bytes.charCodeAt(0) !== 1) return null;
  let position = 0n;
  for (let i = 1; i < 9; i++) position = (position << 8n) | BigInt(bytes.charCodeAt(i));
  return position;
}
