import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
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

  it('the package export is built from the current sources (npm run build:client)', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { exports: Record<string, { types: string; default: string }> };
    assert.deepEqual(pkg.exports['./client'], { types: './dist/client/index.d.ts', default: './dist/client/index.js' });
    for (const name of readdirSync('src/client').filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))) {
      const js = `dist/client/${name.replace(/\.ts$/, '.js')}`;
      const dts = `dist/client/${name.replace(/\.ts$/, '.d.ts')}`;
      const built = Math.min(statSync(js, { throwIfNoEntry: false })?.mtimeMs ?? 0, statSync(dts, { throwIfNoEntry: false })?.mtimeMs ?? 0);
      assert.ok(built >= statSync(`src/client/${name}`).mtimeMs, `${js} is missing or older than src/client/${name}: run npm run build:client`);
    }
  });
});
