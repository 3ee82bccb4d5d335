import { randomBytes } from 'node:crypto';
import type { Embedder } from '../../src/embed/index.ts';
import type { ScopeChecks } from '../../src/api/scope.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';
import type { Target } from '../helpers/targets.ts';
import type { EmbedderTag } from './model.ts';

/**
 * Two embedders that make the same vectors under different ids, one active at a time: rows of
 * the other are listed and read but not found by queries until `relay reindex` moves them.
 */
export class SwitchableEmbedder implements Embedder {
  active: EmbedderTag = 'A';
  readonly dimensions: number;

  constructor(private readonly inner: Embedder) {
    this.dimensions = inner.dimensions;
  }

  idOf(tag: EmbedderTag): string {
    return tag === 'A' ? this.inner.id : `${this.inner.id}+fuzz-b`;
  }

  get id(): string {
    return this.idOf(this.active);
  }

  embed(texts: readonly string[], opts?: { signal?: AbortSignal }): Promise<Float32Array[]> {
    return this.inner.embed(texts, opts);
  }
}

/** The service under fuzz: the in-process API with a known token secret and the switchable embedder. */
export interface FuzzHarness {
  target: Target;
  api: TestApi;
  secret: string;
  embedder: SwitchableEmbedder;
  close(): Promise<void>;
}

export async function startFuzzHarness(target: Target, opts: { scopeChecks?: ScopeChecks } = {}): Promise<FuzzHarness> {
  const secret = randomBytes(32).toString('base64url');
  let embedder: SwitchableEmbedder | undefined;
  const api = await startTestApi(target, {
    secret,
    scopeChecks: opts.scopeChecks,
    embedder: (inner) => (embedder = new SwitchableEmbedder(inner)),
  });
  return { target, api, secret, embedder: embedder!, close: () => api.close() };
}
