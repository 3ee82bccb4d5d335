import { Worker } from 'node:worker_threads';
import type { InferenceSession } from 'onnxruntime-node';
import { OnnxRerankError } from './onnx-errors.ts';

/** int64 unless the model declares int32 inputs (some exports do). */
export type IdArray = BigInt64Array | Int32Array;

export interface SessionInfo {
  inputs: Array<{ name: string; type: string }>;
  outputs: string[];
}

export interface RunResult {
  data: Float32Array;
  dims: number[];
  /** Time inside `session.run`, without the queue or the message hops. */
  ms: number;
}

type FromWorker =
  | { type: 'ready'; inputs: SessionInfo['inputs']; outputs: string[] }
  | { type: 'failed'; message: string }
  | { type: 'result'; id: number; data: Float32Array; dims: number[]; ms: number }
  | { type: 'error'; id: number; message: string }
  | { type: 'closed' };

interface Job {
  id: number;
  feeds: Record<string, IdArray>;
  dims: [number, number];
  output: string;
  signal: AbortSignal | undefined;
  ran: ((ms: number) => void) | undefined;
  settled: boolean;
  resolve(r: RunResult): void;
  reject(err: unknown): void;
  onAbort(): void;
}

/**
 * An onnxruntime session living in a worker thread (see onnx-worker.mjs for why). Runs are
 * queued here, one in the worker at a time, so a caller that aborts leaves the queue before its
 * batch reaches the model; a batch already running finishes and its result is dropped.
 */
export class WorkerSession {
  readonly info: SessionInfo;
  private readonly worker: Worker;
  private readonly queue: Job[] = [];
  private running: Job | null = null;
  private nextId = 1;
  private dead: Error | null = null;
  private closing: Promise<void> | null = null;

  private constructor(worker: Worker, info: SessionInfo) {
    this.worker = worker;
    this.info = info;
    worker.on('message', (msg: FromWorker) => this.onMessage(msg));
    worker.on('error', (err) => this.fail(new OnnxRerankError('rerank_failed', `onnx inference thread crashed: ${err.message}`, { cause: err })));
    worker.on('exit', (code) => this.fail(new OnnxRerankError(this.closing ? 'rerank_closed' : 'rerank_failed', `onnx inference thread exited (code ${code})`)));
    // Idle, the thread must not keep the process alive; busy, it must (a pending result is awaited).
    worker.unref();
  }

  static async open(modelPath: string, sessionOptions: InferenceSession.SessionOptions): Promise<WorkerSession> {
    const worker = new Worker(new URL('./onnx-worker.mjs', import.meta.url), { workerData: { modelPath, sessionOptions } });
    const info = await new Promise<SessionInfo>((resolve, reject) => {
      const onExit = (code: number) => reject(new Error(`the inference thread exited (code ${code}) before loading the model`));
      worker.once('error', reject);
      worker.once('exit', onExit);
      worker.once('message', (msg: FromWorker) => {
        worker.off('error', reject);
        worker.off('exit', onExit);
        if (msg.type === 'ready') resolve({ inputs: msg.inputs, outputs: msg.outputs });
        else reject(new Error(msg.type === 'failed' ? msg.message : `unexpected first message ${msg.type}`));
      });
    });
    return new WorkerSession(worker, info);
  }

  /**
   * Runs one batch; `dims` is [batch, sequence] of every feed. An abort drops a queued run and
   * rejects at once; a run already in the model cannot be stopped, and `ran` still gets its time
   * when it ends (the caller's throughput estimate learns from runs it gave up on, too).
   */
  run(feeds: Record<string, IdArray>, dims: [number, number], output: string, signal?: AbortSignal, ran?: (ms: number) => void): Promise<RunResult> {
    if (this.closing) return Promise.reject(new OnnxRerankError('rerank_closed', 'the onnx reranker is closed'));
    if (this.dead) return Promise.reject(this.dead);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<RunResult>((resolve, reject) => {
      const job: Job = {
        id: this.nextId++,
        feeds,
        dims,
        output,
        signal,
        ran,
        settled: false,
        resolve: (r) => this.settle(job, () => resolve(r)),
        reject: (err) => this.settle(job, () => reject(err)),
        onAbort: () => {
          const at = this.queue.indexOf(job);
          if (at >= 0) this.queue.splice(at, 1);
          job.reject(signal!.reason);
        },
      };
      signal?.addEventListener('abort', job.onAbort, { once: true });
      this.queue.push(job);
      this.pump();
    });
  }

  /** Waits for the running batch, drops the queued ones, and frees the session. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new OnnxRerankError('rerank_closed', 'the onnx reranker is closed');
      for (const job of this.queue.splice(0)) job.reject(closed);
      if (this.dead) return;
      this.worker.ref();
      const done = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
      this.worker.postMessage({ type: 'close' });
      await done;
    })();
    return this.closing;
  }

  private settle(job: Job, fn: () => void): void {
    if (job.settled) return;
    job.settled = true;
    job.signal?.removeEventListener('abort', job.onAbort);
    fn();
  }

  private pump(): void {
    if (this.running || this.dead || this.closing) return;
    const job = this.queue.shift();
    if (!job) {
      this.worker.unref();
      return;
    }
    this.running = job;
    this.worker.ref();
    const transfer = Object.values(job.feeds).map((a) => a.buffer as ArrayBuffer);
    this.worker.postMessage({ type: 'run', id: job.id, feeds: job.feeds, dims: job.dims, output: job.output }, transfer);
  }

  private onMessage(msg: FromWorker): void {
    if (msg.type !== 'result' && msg.type !== 'error') return;
    const job = this.running;
    if (!job || job.id !== msg.id) return;
    this.running = null;
    if (msg.type === 'result') {
      job.ran?.(msg.ms);
      job.resolve({ data: msg.data, dims: msg.dims, ms: msg.ms });
    } else job.reject(new OnnxRerankError('rerank_failed', `onnx inference failed: ${msg.message}`));
    this.pump();
  }

  private fail(err: OnnxRerankError): void {
    this.dead ??= err;
    const jobs = [...(this.running ? [this.running] : []), ...this.queue.splice(0)];
    this.running = null;
    for (const job of jobs) job.reject(err);
  }
}
