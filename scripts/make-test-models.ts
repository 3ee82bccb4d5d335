// `npm run make-test-models [-- --force] [name…]`: writes the generated cross-encoders used by
// the tests and the rerank benchmark into .cache/models/<name>/ (git-ignored). They are also
// built on demand by `ensureTestModel`; this is for building them ahead, or again.
import { ensureTestModel, TEST_MODELS, type TestModelName } from '../src/rerank/model-gen/index.ts';

const args = process.argv.slice(2);
const force = args.includes('--force');
const names = args.filter((a) => !a.startsWith('--'));
const unknown = names.filter((n) => !(n in TEST_MODELS));
if (unknown.length > 0) {
  console.error(`make-test-models: unknown model ${unknown.join(', ')}; known: ${Object.keys(TEST_MODELS).join(', ')}`);
  process.exit(2);
}
for (const name of (names.length > 0 ? names : Object.keys(TEST_MODELS)) as TestModelName[]) {
  const started = performance.now();
  const dir = await ensureTestModel(name, { force });
  console.log(`${name}: ${dir} (${Math.round(performance.now() - started)} ms)`);
}
