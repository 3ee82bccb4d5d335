// Runs the baseline app in a process of its own (as the real service runs in `bench query`),
// on PORT at 127.0.0.1; prints its URL once it listens, and stops on SIGTERM.
import { buildBaselineApp } from './sse-baseline.ts';

const app = buildBaselineApp();
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
const addr = app.server.address();
console.log(`listening http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : ''}`);
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
