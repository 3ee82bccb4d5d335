export { buildApp, type AppOptions } from './app.ts';
export { startServer, startSweeper, type RunningServer, type ServerOptions } from './server.ts';
export type { ApiDeps } from './context.ts';
export { ApiError, ErrorCode, errorBody } from './errors.ts';
export { formatEvent, formatComment, SseWriter, SSE_HEADERS, type SseEvent } from './sse.ts';
export { logOptions } from './logging.ts';
