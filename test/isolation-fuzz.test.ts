import { after, before, describe, it } from 'node:test';
import { startFuzzHarness, type FuzzHarness } from './regression/harness.ts';
import { assertIsolation, fuzzSettings } from './regression/property.ts';
import { targets } from './helpers/targets.ts';

// The slice of `npm run test:regression` that `npm test` runs: the same property, fixed seed, a
// few short scenarios. The full run, and the proofs that it goes red, are test/regression/.
for (const target of targets()) {
  describe(`cross-tenant isolation fuzz, short fixed-seed slice (${target.name})`, () => {
    let h: FuzzHarness;
    before(async () => {
      h = await startFuzzHarness(target);
    });
    after(async () => {
      await h?.close();
    });

    it('every answer, HTTP and SQL, matches the oracle of what each principal may see', async () => {
      await assertIsolation(h, fuzzSettings({ runs: 10, seed: 20260801, maxOps: 30 }, {}));
    });
  });
}
