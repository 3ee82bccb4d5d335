import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type UpstreamMode = 'ok' | 'fail' | 'hang';

/** A local HTTP upstream (a reranker, an embeddings API) whose behaviour the test switches; it counts requests and can go away and come back on its port. */
export class Upstream {
  mode: UpstreamMode = 'ok';
  requests = 0;
  private server: Server | null = null;
  private readonly hanging = new Set<ServerResponse>();
  port = 0;

  constructor(private readonly answer: (body: Record<string, unknown>, req: IncomingMessage) => unknown) {}

  async listen(): Promise<void> {
    this.server = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
      req.on('end', () => {
        this.requests++;
        if (this.mode === 'hang') {
          this.hanging.add(res);
          res.on('close', () => this.hanging.delete(res));
          return;
        }
        if (this.mode === 'fail') {
          res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"overloaded"}');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(this.answer(JSON.parse(raw) as Record<string, unknown>, req)));
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Stops listening and drops every connection: callers meet a refused connection. */
  async close(): Promise<void> {
    if (!this.server) return;
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server!.close(resolve));
    this.server = null;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }
}
