-- Everything 0005 made, in reverse order. Replicas of the previous release sweep on every timer
-- again (each deletes what is expired; the work is repeated, not wrong).
DROP FUNCTION IF EXISTS relay_sweep_turn(integer);
DROP TABLE IF EXISTS relay_sweep_turn;
