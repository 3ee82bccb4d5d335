// @fastify/rate-limit's own Redis store (its Lua INCR + PEXPIRE script), which its package ships
// without types. We wrap it to count and report failures; the counting stays the library's.
declare module '@fastify/rate-limit/store/RedisStore.js' {
  import type { Redis } from 'ioredis';

  type Done = (err: Error | null, result?: { current: number; ttl: number }) => void;

  class RedisStore {
    constructor(continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, key?: string);
    incr(key: string, done: Done, timeWindow: number, max: number): void;
  }
  export default RedisStore;
}
