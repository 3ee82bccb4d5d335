import type { TrafficLayer } from './types.ts';

/** The controller's own router: it reads the controller's weight at every request, so a share holds as soon as it is set. */
export function builtinTraffic(): TrafficLayer {
  let share = 0;
  return {
    kind: 'builtin',
    describe: () => 'builtin router',
    async apply(s) {
      share = s;
      return s;
    },
    async read() {
      return share;
    },
  };
}
