// `npm run docs`: rewrites the generated parts of the docs from the code (today: the API's error
// code table in docs/errors.md). `npm run docs -- --check` changes nothing and exits 1 when a
// generated part is stale; test/docs.test.ts runs the same check.
import { readFile, writeFile } from 'node:fs/promises';
import { generatedParts, regenerate } from './docs-parts.ts';

const check = process.argv.includes('--check');
let stale = 0;
for (const { file, marker, content } of generatedParts()) {
  const before = await readFile(file, 'utf8');
  const after = regenerate(before, marker, content);
  if (after === before) continue;
  stale++;
  if (check) console.error(`docs: ${file} (${marker}) is stale: run npm run docs`);
  else await writeFile(file, after);
}
if (check && stale > 0) process.exit(1);
if (!check) console.error(`docs: ${stale} part(s) rewritten`);
