-- One sweeper for the fleet (docs/scaling.md). Every `relay serve` replica runs the expiry sweep
-- on its own timer; this makes one of them take each turn and the others skip theirs.
--
-- A turn is taken in the transaction that does the sweep's work, under a transaction-level
-- advisory lock (class 0x52535750, "RSWP"): released by the commit or rollback, never left behind
-- on a connection. A session-level lock would not hold behind PgBouncer in transaction mode, which
-- hands the server connection (and a session lock with it) to whichever client runs the next
-- transaction. The lock alone only keeps two sweeps from running at once, and a sweep takes
-- milliseconds, so the row below says when the last turn was taken: a replica whose timer fires
-- before the turn is due again skips it.
CREATE TABLE relay_sweep_turn (
  id      smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  last_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO relay_sweep_turn DEFAULT VALUES;
REVOKE ALL ON relay_sweep_turn FROM PUBLIC;

-- True when the caller takes the turn: nobody else is sweeping now, and the last turn began at
-- least `min_gap_ms` ago. It then holds the lock and the turn's row until its transaction ends.
-- False (at once, without waiting): skip this turn.
CREATE FUNCTION relay_sweep_turn(min_gap_ms integer) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF min_gap_ms IS NULL OR min_gap_ms < 0 OR min_gap_ms > 86400000 THEN
    RAISE EXCEPTION 'min_gap_ms must be in 0..86400000';
  END IF;
  IF NOT pg_try_advisory_xact_lock(1381193552, 0) THEN
    RETURN false;
  END IF;
  UPDATE public.relay_sweep_turn SET last_at = now()
   WHERE id = 1 AND last_at <= now() - make_interval(secs => min_gap_ms / 1000.0);
  RETURN FOUND;
END $$;
REVOKE ALL ON FUNCTION relay_sweep_turn(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION relay_sweep_turn(integer) TO {{app_role}};
