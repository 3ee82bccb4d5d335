/**
 * Turn `turn` of an ABBA sequence: `a` then `b` on even turns, `b` then `a` on odd ones, so
 * that across turns each side runs first as often as second and drift on a shared machine
 * (a neighbour's load, a clock change, the other side's garbage) lands on both alike.
 */
export async function inTurns(turn: number, a: () => Promise<void>, b: () => Promise<void>): Promise<void> {
  if (turn % 2 === 0) {
    await a();
    await b();
  } else {
    await b();
    await a();
  }
}
