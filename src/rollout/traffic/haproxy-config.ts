import { haproxyDefaults } from '../../fleet/index.ts';

export interface CanaryHaproxyConfigOptions {
  /** `address:port` HAProxy listens on for clients. */
  bind: string;
  /** The runtime API socket the controller drives (`--traffic haproxy=<this>`). */
  socket: string;
  /** Backend name (`--backend`). Default `relay`. */
  backend?: string;
  /** `host:port` of each release (`relay serve`), and its server name (`--stable-server`, `--candidate-server`). */
  stable: { name?: string; address: string };
  candidate: { name?: string; address: string };
  /**
   * The longest a release's answer may stay silent (`timeout server` and `tunnel`): above
   * RELAY_SSE_HEARTBEAT_MS (15 s), or idle SSE streams are cut. Default 60 s.
   */
  serverTimeoutMs?: number;
  /** `GET /readyz` check interval. Default 1000 ms. */
  checkIntervalMs?: number;
}

/**
 * HAProxy 2.6 in front of two releases for `relay canary run --traffic haproxy=…`.
 *
 * Placement is by user: the bearer token's `tid` and `sub` claims, read with HAProxy's own
 * `http_auth_bearer` and `jwt_payload_query` (decoded, not verified: the release still verifies
 * every token, a forged one meets its 401; requests without both claims are placed by client
 * address), hashed with `balance hash` on a consistent-hashing ring. The ring holds points per
 * unit of weight: raising the candidate's weight adds candidate points and lowering stable's
 * removes stable points, so a user only ever moves from stable to the candidate as the share
 * rises. Both weights start as a fresh rollout's (stable 100, candidate 0); the controller sets
 * them through the runtime API (`level admin`: `set server … weight`), and after a reload HAProxy
 * starts from these again until the controller's next interval writes its own.
 * `X-Relay-Server` tells a client which server answered.
 */
export function canaryHaproxyConfig(o: CanaryHaproxyConfigOptions): string {
  const backend = o.backend ?? 'relay';
  const serverTimeout = o.serverTimeoutMs ?? 60_000;
  const inter = o.checkIntervalMs ?? 1000;
  return [
    'global',
    '  maxconn 4096',
    `  stats socket ${o.socket} mode 600 level admin`,
    '',
    ...haproxyDefaults({ clientTimeout: '60s', serverTimeoutMs: serverTimeout, checkIntervalMs: inter }),
    'frontend relay',
    `  bind ${o.bind}`,
    `  default_backend ${backend}`,
    '',
    `backend ${backend}`,
    "  http-request set-var(txn.relay_tid) http_auth_bearer,jwt_payload_query('$.tid')",
    "  http-request set-var(txn.relay_sub) http_auth_bearer,jwt_payload_query('$.sub')",
    '  http-request set-var-fmt(txn.relay_user) "user/%[var(txn.relay_tid)]/%[var(txn.relay_sub)]" if { var(txn.relay_tid) -m found } { var(txn.relay_sub) -m found }',
    '  http-request set-var-fmt(txn.relay_user) "addr/%[src]" unless { var(txn.relay_user) -m found }',
    '  balance hash var(txn.relay_user)',
    '  hash-type consistent',
    '  http-response set-header X-Relay-Server %s',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    `  default-server check inter ${inter}ms fall 2 rise 2`,
    `  server ${o.stable.name ?? 'stable'} ${o.stable.address} weight 100`,
    `  server ${o.candidate.name ?? 'candidate'} ${o.candidate.address} weight 0`,
    '',
  ].join('\n');
}
