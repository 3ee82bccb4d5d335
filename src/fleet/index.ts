// Fleet parts (Debian packages) started on free ports by the benchmarks and tests that need
// them: see docs/scaling.md.
export { findProgram, freePort, portAccepts, startDaemon, type Daemon, type DaemonOptions } from './daemon.ts';
export { haproxyConfig, haproxyDefaults, parseServerStates, startHaproxy, startHaproxyWith, type Backend, type Haproxy, type HaproxyOptions, type HaproxyWith, type ServerState } from './haproxy.ts';
export { startRedis, type RedisOptions, type RedisServer } from './redis.ts';
export { pgbouncerIni, startPgBouncer, upstreamOf, userlistTxt, type PgBouncer, type PgBouncerIniOptions, type PgBouncerOptions, type PgBouncerUser } from './pgbouncer.ts';
export { haLabAvailable, startHaLab, type HaLab, type HaLabMember, type HaLabNode } from './ha-lab.ts';
