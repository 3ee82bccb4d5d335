export type TrafficSpec = { kind: 'builtin' } | { kind: 'haproxy'; socket: string };

/** `--traffic builtin` (default) or `--traffic haproxy=<runtime API socket path or host:port>`. */
export function parseTrafficSpec(spec: string): TrafficSpec {
  if (spec === 'builtin') return { kind: 'builtin' };
  const m = /^haproxy=(.+)$/.exec(spec);
  if (m) return { kind: 'haproxy', socket: m[1]! };
  throw new Error(`--traffic must be builtin or haproxy=<runtime API socket>, not ${JSON.stringify(spec)}`);
}
