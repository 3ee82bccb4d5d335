// Where the canary's split happens: the controller's own router (builtin) or HAProxy driven
// through its runtime API (docs/canary.md, "Traffic layers").
export { builtinTraffic } from './builtin.ts';
export { canaryHaproxyConfig, type CanaryHaproxyConfigOptions } from './haproxy-config.ts';
export { haproxyTraffic, parseGetWeight, shareOf, type HaproxyTrafficOptions } from './haproxy.ts';
export { askHaproxy, TrafficError } from './runtime-api.ts';
export { parseTrafficSpec, type TrafficSpec } from './spec.ts';
export type { TrafficLayer } from './types.ts';
