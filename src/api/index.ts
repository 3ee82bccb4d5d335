export { buildApp, type AppOptions } from './app.ts';
export { ApiError, ErrorCode, errorBody } from './errors.ts';
