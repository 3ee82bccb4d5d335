/**
 * Where the split between stable and candidate happens. `builtin`: the controller's own router
 * reads the weight at every request. `haproxy`: HAProxy balances, and the controller writes the
 * weights through its runtime API.
 */
export interface TrafficLayer {
  kind: 'builtin' | 'haproxy';
  /** For logs and the status view: which split this is. */
  describe(): string;
  /**
   * Makes the split send `share` percent of users to the candidate; resolves with the share the
   * traffic layer confirmed holding afterwards, rejects (TrafficError) when it could not confirm it.
   */
  apply(share: number): Promise<number>;
  /** The share the traffic layer holds now (null: neither release takes traffic). */
  read(): Promise<number | null>;
}
