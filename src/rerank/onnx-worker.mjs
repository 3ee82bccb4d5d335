// The ONNX reranker's inference thread. onnxruntime-node's `session.run` returns a promise but
// runs the whole graph synchronously on the calling thread (a setImmediate, then the native
// call), so on the main thread a 200 ms batch would freeze every other request's stream for
// 200 ms. Here it blocks only this worker. Plain JavaScript on purpose: a worker does not
// inherit the tsx loader that `bin/relay.mjs` registers in the main thread.
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';

const port = parentPort;
if (!port) throw new Error('onnx-worker.mjs runs only as a worker thread');

const ort = await import('onnxruntime-node');
let session;
try {
  session = await ort.InferenceSession.create(workerData.modelPath, workerData.sessionOptions);
} catch (err) {
  port.postMessage({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
}

if (session) {
  port.postMessage({
    type: 'ready',
    inputs: session.inputMetadata.map((m) => ({ name: m.name, type: m.isTensor ? m.type : 'non-tensor' })),
    outputs: session.outputNames,
  });
  const handle = async (msg) => {
    if (msg.type === 'close') {
      // Writes the profile file (when profiling is on) before the session goes.
      if (workerData.sessionOptions.enableProfiling) session.endProfiling();
      await session.release();
      port.postMessage({ type: 'closed' });
      port.close();
      return;
    }
    try {
      const feeds = {};
      for (const [name, data] of Object.entries(msg.feeds)) {
        feeds[name] = new ort.Tensor(data instanceof Int32Array ? 'int32' : 'int64', data, msg.dims);
      }
      const started = performance.now();
      const result = await session.run(feeds, [msg.output]);
      const ms = performance.now() - started;
      const out = result[msg.output];
      if (!out || out.type !== 'float32') throw new Error(`output ${msg.output} is ${out ? out.type : 'missing'}, expected float32`);
      // A copy the size of the logits (a few floats per pair), so it can be transferred.
      const data = Float32Array.from(out.data);
      port.postMessage({ type: 'result', id: msg.id, data, dims: out.dims, ms }, [data.buffer]);
    } catch (err) {
      port.postMessage({ type: 'error', id: msg.id, message: err instanceof Error ? err.message : String(err) });
    }
  };
  // One message at a time: `session.run` yields once before its native call, and a `close`
  // handled in that gap would free the session under the run.
  let chain = Promise.resolve();
  port.on('message', (msg) => {
    chain = chain.then(() => handle(msg));
  });
}
