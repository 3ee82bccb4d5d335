import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { build } from 'esbuild';

/** Bundles `entry` for a browser; fails the build on any Node built-in it reaches. */
async function browserBundle(entry: { file: string } | { contents: string }) {
  return build({
    ...('file' in entry ? { entryPoints: [entry.file] } : { stdin: { contents: entry.contents, resolveDir: process.cwd(), loader: 'ts' } }),
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
}

// Globals a browser does not have; a bundle that names one breaks there at run time.
const NODE_GLOBALS = /\b(process|Buffer|require|__dirname|__filename|global|setImmediate)\b\s*[.([]/;

describe('relay-memory/client in a browser', () => {
  for (const file of ['src/client/index.ts', 'dist/client/index.js']) {
    it(`${file} bundles for platform browser with nothing of Node`, async () => {
      const out = await browserBundle({ file });
      const inputs = Object.keys(out.metafile.inputs);
      for (const input of inputs) assert.match(input, /^(src\/client\/|dist\/client\/|node_modules\/eventsource-parser\/)/, `the bundle pulls in ${input}`);
      assert.ok(inputs.some((i) => i.includes('eventsource-parser')), 'the SSE parser is bundled');
      const code = out.outputFiles[0]!.text;
      assert.doesNotMatch(code, NODE_GLOBALS);
      assert.doesNotMatch(code, /["']node:/);
    });
  }

  it('the check catches Node: a built-in or a server module fails the browser bundle', async () => {
    await assert.rejects(browserBundle({ contents: "import { readFileSync } from 'node:fs'; console.log(readFileSync);" }), /node:fs/);
    await assert.rejects(browserBundle({ contents: "export * from './src/api/index.ts';" }));
    assert.match("const b = Buffer.from('x')", NODE_GLOBALS);
  });

  it('src/client imports only its own modules and eventsource-parser', () => {
    let seen = 0;
    for (const name of readdirSync('src/client').filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(`src/client/${name}`, 'utf8');
      for (const m of text.matchAll(/^\s*(?:import|export)\s+(type\s+)?[^'";]*?from\s+'([^']+)'/gm)) {
        const [, typeOnly, spec] = m;
        const ok = /^\.\/[\w-]+\.ts$/.test(spec!) || spec === 'eventsource-parser';
        seen++;
        assert.ok(ok || typeOnly, `${name} imports ${spec}`);
      }
    }
    assert.ok(seen >= 10, `only ${seen} imports found: is the pattern still right?`);
  });

  // Not by modification times: `npm test` rebuilds dist first (pretest), so a check of times
  // passes whatever dist holds. The sources are built afresh into a folder of the test's own and
  // every file of dist/client must be what that build made, byte for byte.
  it('the package export is what the current sources build to (npm run build:client)', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { exports: Record<string, { types: string; default: string }> };
    assert.deepEqual(pkg.exports['./client'], { types: './dist/client/index.d.ts', default: './dist/client/index.js' });
    const fresh = mkdtempSync(join(tmpdir(), 'relay-client-build-'));
    try {
      const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
      const run = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.client.json', '--outDir', fresh], { encoding: 'utf8' });
      assert.equal(run.status, 0, `tsc: ${run.stdout}${run.stderr}`);
      const files = (dir: string) => (readdirSync(dir, { recursive: true }) as string[]).filter((f) => /\.(js|d\.ts|map)$/.test(f)).sort();
      const want = files(fresh);
      assert.ok(want.includes('index.js') && want.includes('index.d.ts'), JSON.stringify(want));
      assert.deepEqual(files('dist/client'), want, 'dist/client holds other files than the sources build to: run npm run build:client');
      for (const f of want) {
        const [got, built] = [readFileSync(join('dist/client', f), 'utf8'), readFileSync(join(fresh, f), 'utf8')];
        if (f.endsWith('.map')) {
          // A map names its sources relative to where it lies: compare what it maps.
          const strip = (m: string) => {
            const { mappings, names, file } = JSON.parse(m) as { mappings: string; names: string[]; file: string };
            return { mappings, names, file };
          };
          assert.deepEqual(strip(got), strip(built), `dist/client/${f} is not what the sources build to: run npm run build:client`);
        } else {
          assert.ok(got === built, `dist/client/${f} is not what the sources build to: run npm run build:client`);
        }
      }
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });
});
