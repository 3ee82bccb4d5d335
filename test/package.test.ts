// The package as a user gets it: `npm pack`, installed into an empty folder, runs `relay serve`
// on the embedded store, and `relay-memory/client` type-checks there. Nothing of the test suite
// or the benchmarks' data is in the tarball.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';

const run = (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) => {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
};

describe('the npm package', { timeout: 600_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'relay-pack-'));
  const app = join(dir, 'app');
  let tarball: string;
  let files: string[];

  before(() => {
    run('npm', ['pack', '--pack-destination', dir, '--silent'], process.cwd());
    tarball = join(dir, readdirSync(dir).find((f) => f.endsWith('.tgz'))!);
    files = run('tar', ['tzf', tarball], dir).split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    spawnSync('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'relay-user', private: true, type: 'module' }));
    // As the repository's .npmrc (npm never packs one): no GPU runtime download at install.
    writeFileSync(join(app, '.npmrc'), 'onnxruntime-node-install=skip\n');
    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], app);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('holds the CLI, the sources, the built client and the licence, and no tests or bench data', () => {
    for (const f of ['bin/relay.mjs', 'src/cli/main.ts', 'dist/client/index.js', 'dist/client/index.d.ts', 'LICENSE', 'README.md']) assert.ok(files.includes(f), `${f} is packed`);
    const stray = files.filter((f) => /^(test|bench)\//.test(f) || /\.test\.ts$/.test(f) || f === 'baseline.json');
    assert.deepEqual(stray, []);
  });

  it('runs relay serve on the embedded store: ready, a write and a query answer', async () => {
    const env = { ...process.env, RELAY_DATA_DIR: join(dir, 'data'), RELAY_JWT_SECRET: randomBytes(32).toString('base64url'), PORT: '0', HOST: '127.0.0.1', RELAY_MASTER_KEY: '', DATABASE_URL: '', RELAY_MIGRATE_URL: '', RELAY_DRAIN_MS: '0' };
    const bin = join(app, 'node_modules/.bin/relay');
    const child = spawn(bin, ['serve'], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    try {
      const url = await new Promise<string>((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`no start in 120 s:\n${out}\n${err}`)), 120_000);
        child.once('exit', (code) => fail(new Error(`relay serve exited ${code}:\n${out}\n${err}`)));
        child.stdout.on('data', () => {
          const line = out.split('\n').find((l) => l.includes('relay memory is serving'));
          if (line) {
            clearTimeout(timer);
            ok((JSON.parse(line) as { url: string }).url);
          }
        });
      });
      let ready = 0;
      for (let i = 0; i < 100 && ready !== 200; i++) {
        ready = (await fetch(`${url}/readyz`)).status;
        if (ready !== 200) await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(ready, 200);
      const token = run(bin, ['token', '--tenant', 'dev', '--user', 'alice'], app, env).trim().split('\n').at(-1)!;
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const write = await fetch(`${url}/api/v1/memory`, { method: 'POST', headers, body: JSON.stringify({ text: 'Alice keeps her spare keys under the blue pot.' }) });
      assert.equal(write.status, 201, await write.clone().text());
      const { ids } = (await write.json()) as { ids: string[] };
      const query = await fetch(`${url}/api/v1/memory/query`, { method: 'POST', headers: { ...headers, accept: 'application/json' }, body: JSON.stringify({ query: 'where are the spare keys?' }) });
      assert.equal(query.status, 200);
      const found = (await query.json()) as { results: { id: string }[] };
      assert.deepEqual(found.results.map((r) => r.id), ids);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('close', r));
    }
  });

  it("type-checks `import { RelayClient } from 'relay-memory/client'` under strict", () => {
    writeFileSync(
      join(app, 'check.ts'),
      "import { RelayClient } from 'relay-memory/client';\nconst relay = new RelayClient({ baseUrl: 'http://127.0.0.1:8080', token: 't' });\nexport const added: Promise<{ ids: string[] }> = relay.add({ text: 'x' });\n",
    );
    for (const resolution of ['node16', 'bundler']) {
      const module = resolution === 'node16' ? 'node16' : 'esnext';
      writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, noEmit: true, module, moduleResolution: resolution, target: 'es2022', lib: ['es2022', 'dom'], skipLibCheck: false, types: [] }, files: ['check.ts'] }));
      run(process.execPath, [resolve('node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], app);
    }
  });
});
