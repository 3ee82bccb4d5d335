import net from 'node:net';

/** HAProxy's runtime API did not answer, or answered something other than what was asked for. */
export class TrafficError extends Error {
  override readonly name = 'TrafficError';
}

/**
 * One command on HAProxy's runtime API (the `stats socket … level admin` UNIX socket, or
 * `host:port` for a TCP one), in its non-interactive mode: HAProxy answers and closes the
 * connection. Rejects with a TrafficError when the socket is missing, refuses, or stays silent
 * for `timeoutMs`.
 */
export function askHaproxy(socket: string, command: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const tcp = /^([^/]+):(\d+)$/.exec(socket);
    const s = tcp ? net.connect({ host: tcp[1]!, port: Number(tcp[2]) }) : net.connect(socket);
    let out = '';
    const fail = (why: string) => {
      s.destroy();
      reject(new TrafficError(`HAProxy runtime API ${socket}: ${why} (${command.split(' ').slice(0, 2).join(' ')})`));
    };
    s.setEncoding('utf8');
    s.setTimeout(timeoutMs, () => fail(`no answer in ${timeoutMs} ms`));
    s.on('data', (d: string) => (out += d));
    s.once('error', (e: NodeJS.ErrnoException) => fail(e.code ?? e.message));
    s.once('end', () => resolve(out));
    s.once('connect', () => s.write(`${command}\n`));
  });
}
