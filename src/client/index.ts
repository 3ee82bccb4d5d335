// The public surface of `relay-memory/client`. Browser-safe: nothing here may import Node's
// modules or the server's (test/client-browser.test.ts bundles it for the browser to check).
export { RelayClient, type AddOptions, type CallOptions, type ItemOptions, type RelayClientOptions, type UpdateOptions } from './client.ts';
export {
  RelayError,
  RelayNetworkError,
  RelayStreamError,
  SERVER_ERROR_STATUS,
  type ClientErrorCode,
  type RelayErrorCode,
  type ServerErrorCode,
} from './errors.ts';
export { isRetryable, type RetryOptions } from './retry.ts';
export { QueryStream } from './stream.ts';
export type { TokenSource } from './transport.ts';
export type * from './types.ts';
