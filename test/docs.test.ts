// The docs cannot drift from the code: the generated parts are current, every status the code
// answers matches the error catalog, every environment variable the code reads is in README's
// configuration table with its real default, and the metrics reference lists what the registry has.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ERROR_CATALOG } from '../src/api/error-catalog.ts';
import { ErrorCode } from '../src/api/errors.ts';
import { EnvSchema } from '../src/config/index.ts';
import { createMetrics } from '../src/metrics/index.ts';
import { generatedParts, regenerate } from '../scripts/docs-parts.ts';

async function sources(dir: string): Promise<{ path: string; text: string }[]> {
  const out: { path: string; text: string }[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && /\.(ts|mjs)$/.test(e.name) && !e.name.endsWith('.test.ts')) {
      const path = join(e.parentPath, e.name);
      out.push({ path, text: await readFile(path, 'utf8') });
    }
  }
  return out;
}

/** The rows of the first Markdown table after `heading`, as cells. */
function tableAfter(markdown: string, heading: string): string[][] {
  const from = markdown.indexOf(heading);
  assert.ok(from >= 0, `no "${heading}" section`);
  const lines = markdown.slice(from).split('\n');
  const start = lines.findIndex((l) => l.startsWith('|'));
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.slice(1, -1).split(' | ').map((c) => c.trim()));
  }
  return rows;
}

const ticked = (cell: string): string[] => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

describe('docs follow the code', () => {
  it('the generated parts are current (npm run docs)', async () => {
    for (const part of generatedParts()) {
      const text = await readFile(part.file, 'utf8');
      assert.equal(regenerate(text, part.marker, part.content), text, `${part.file} is stale: run npm run docs`);
    }
  });

  it('every ApiError the code raises has the status its catalog entry documents', async () => {
    const names = new Map(Object.entries(ErrorCode));
    let seen = 0;
    for (const { path, text } of await sources('src')) {
      for (const m of text.matchAll(/new ApiError\(\s*(\d{3}),\s*ErrorCode\.(\w+)/g)) {
        const code = names.get(m[2]!);
        assert.ok(code, `${path}: unknown ErrorCode.${m[2]}`);
        assert.equal(Number(m[1]), ERROR_CATALOG[code].status, `${path}: ${code} raised with ${m[1]}`);
        seen++;
      }
    }
    assert.ok(seen >= 15, `found only ${seen} ApiError sites: the scan is broken`);
  });

  it("README's configuration table has every variable the code reads, with its real default", async () => {
    const readme = await readFile('README.md', 'utf8');
    const rows = tableAfter(readme, '## Configuration');
    const documented = new Map<string, string>();
    for (const [vars = '', defaults = ''] of rows) {
      const names = ticked(vars).filter((v) => /^[A-Z][A-Z0-9_]+$/.test(v));
      const dflts = defaults.split(',').map((d) => d.trim());
      names.forEach((n, i) => documented.set(n, (names.length === dflts.length ? dflts[i] : dflts[0])!));
    }
    const read = new Set(Object.keys(EnvSchema.shape));
    for (const { text } of await sources('src')) for (const m of text.matchAll(/\benv\.([A-Z][A-Z0-9_]+)/g)) read.add(m[1]!);
    assert.ok(read.size > 50);
    for (const name of read) assert.ok(documented.has(name), `${name} is read by the code but not in README's configuration table`);
    for (const name of documented.keys()) assert.ok(read.has(name), `README documents ${name}, which nothing reads`);
    for (const [name, schema] of Object.entries(EnvSchema.shape)) {
      const parsed = schema.safeParse(undefined);
      const real = parsed.success && parsed.data !== undefined ? String(parsed.data) : '—';
      const doc = documented.get(name)!.replace(/^`|`$/g, '');
      assert.equal(doc, real, `${name}: README says the default is ${doc}, the code has ${real}`);
    }
  });

  it('the metrics reference lists every metric of the registry with its type and labels', async () => {
    const doc = await readFile('docs/observability.md', 'utf8');
    const rows = tableAfter(doc, '## Metrics');
    const documented = new Map(rows.map(([name = '', type = '', labels = '']) => [ticked(name)[0] ?? '', { type, labels }]));
    const metrics = createMetrics({ release: 'docs', tenantLabels: 1 });
    const all = (await metrics.registry.getMetricsAsJSON()).filter((m) => m.name.startsWith('relay_'));
    assert.ok(all.length >= 15);
    for (const m of all) {
      const d = documented.get(m.name);
      assert.ok(d, `${m.name} is not in docs/observability.md`);
      assert.ok(d.type.startsWith(String(m.type)), `${m.name}: documented as ${d.type}, is a ${m.type}`);
      const labels = new Set(m.values.flatMap((v) => Object.keys(v.labels)).filter((l) => l !== 'le'));
      const documentedLabels = new Set(ticked(d.labels).filter((l) => /^[a-z_]+$/.test(l)));
      for (const l of labels) assert.ok(documentedLabels.has(l), `${m.name}: label ${l} is not documented`);
    }
    const names = new Set(all.map((m) => m.name));
    for (const name of documented.keys()) if (name.startsWith('relay_')) assert.ok(names.has(name), `docs/observability.md lists ${name}, which the registry lacks`);
  });
});
