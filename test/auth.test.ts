import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { base64url, SignJWT, type JWTPayload } from 'jose';
import { AuthError, createTokenVerifier, mintToken, parseTtl, signingSecret, type AuthErrorReason, type TokenVerifier } from '../src/auth/index.ts';
import { ConfigError, loadConfig, type AuthConfig } from '../src/config/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'relay-auth-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const SECRET = randomBytes(32).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);
// Record, not JWTPayload: some tests need claims of the wrong type.
const claims = (extra: Record<string, unknown> = {}): JWTPayload => ({ tid: 't1', sub: 'alice', exp: now() + 600, ...extra });

function pem(key: KeyObject): string {
  return key.export({ type: 'spki', format: 'pem' }).toString();
}

function writeFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const rsa2 = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ed = generateKeyPairSync('ed25519');
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsaPem = pem(rsa.publicKey);
const rsaFile = writeFile('rsa.pem', rsaPem);
const edFile = writeFile('ed.pem', pem(ed.publicKey));
const ecFile = writeFile('ec.pem', pem(ec.publicKey));

async function sign(payload: JWTPayload, alg: string, key: KeyObject | Uint8Array, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ ...header, alg }).sign(key);
}
const hs = (payload: JWTPayload, secret = SECRET) => sign(payload, 'HS256', new TextEncoder().encode(secret));

/** Every message seen in a refusal, to check none of them leaks a token or a secret. */
const messages: { message: string; token: string }[] = [];

async function refused(verifier: TokenVerifier, header: string | undefined, reason: AuthErrorReason): Promise<void> {
  await assert.rejects(verifier.verify(header), (err: unknown) => {
    assert.ok(err instanceof AuthError, `expected AuthError, got ${String(err)}`);
    assert.equal(err.reason, reason, err.message);
    assert.equal(err.code, 'unauthorized');
    messages.push({ message: err.message, token: header ?? '' });
    return true;
  });
}

describe('createTokenVerifier: HS256 secret', async () => {
  const verifier = await createTokenVerifier({ secret: SECRET });

  it('accepts a valid token, with any case of the Bearer scheme', async () => {
    const token = await hs(claims());
    assert.deepEqual(await verifier.verify(`Bearer ${token}`), { tenantId: 't1', subject: 'alice', service: false });
    assert.equal((await verifier.verify(`bearer ${token}`)).subject, 'alice');
    assert.equal((await verifier.verify(`BEARER  ${token}`)).tenantId, 't1');
  });

  it('refuses an expired token, within 30 s of tolerance only', async () => {
    await refused(verifier, `Bearer ${await hs(claims({ exp: now() - 120 }))}`, 'expired');
    assert.equal((await verifier.verify(`Bearer ${await hs(claims({ exp: now() - 5 }))}`)).subject, 'alice');
  });

  it('refuses a token that is not valid yet', async () => {
    await refused(verifier, `Bearer ${await hs(claims({ nbf: now() + 120 }))}`, 'not_yet_valid');
  });

  it('refuses a token without exp', async () => {
    await refused(verifier, `Bearer ${await hs({ tid: 't1', sub: 'alice' })}`, 'bad_claims');
  });

  it('refuses a tampered payload and a token signed with another secret', async () => {
    const [h, , s] = (await hs(claims())).split('.');
    const forged = base64url.encode(JSON.stringify(claims({ tid: 't2' })));
    await refused(verifier, `Bearer ${h}.${forged}.${s}`, 'bad_signature');
    await refused(verifier, `Bearer ${await hs(claims(), randomBytes(32).toString('base64url'))}`, 'bad_signature');
  });

  it('remembers a verified token only until it expires, and only by its exact text', async () => {
    // exp 28 s ago: accepted within the 30 s tolerance, refused 1–2 s later; the second verify
    // answers from the remembered result, the third must not.
    const token = await hs(claims({ exp: now() - 28 }));
    assert.equal((await verifier.verify(`Bearer ${token}`)).subject, 'alice');
    assert.equal((await verifier.verify(`Bearer ${token}`)).subject, 'alice');
    await new Promise((r) => setTimeout(r, 3100));
    await refused(verifier, `Bearer ${token}`, 'expired');
    // A verified token's header and payload under another signature are checked, not remembered.
    const good = await hs(claims());
    assert.equal((await verifier.verify(`Bearer ${good}`)).subject, 'alice');
    const [h, p, s] = good.split('.') as [string, string, string];
    const flipped = `${s.slice(0, -2)}${s.at(-2) === 'A' ? 'B' : 'A'}${s.at(-1)}`;
    await refused(verifier, `Bearer ${h}.${p}.${flipped}`, 'bad_signature');
    await refused(verifier, `Bearer ${h}.${p}.${await hs(claims(), randomBytes(32).toString('base64url')).then((t) => t.split('.')[2])}`, 'bad_signature');
    // What a verify returns cannot be changed for the next caller.
    const principal = await verifier.verify(`Bearer ${good}`);
    assert.throws(() => Object.assign(principal, { tenantId: 't2' }), TypeError);
    assert.equal((await verifier.verify(`Bearer ${good}`)).tenantId, 't1');
  });

  it('refuses alg none', async () => {
    const none = `${base64url.encode('{"alg":"none","typ":"JWT"}')}.${base64url.encode(JSON.stringify(claims()))}.`;
    await refused(verifier, `Bearer ${none}`, 'bad_signature');
  });

  it('refuses an asymmetric token when only a secret is configured', async () => {
    await refused(verifier, `Bearer ${await sign(claims(), 'RS256', rsa.privateKey)}`, 'bad_signature');
  });

  it('refuses missing headers and other schemes as missing, broken bearer values as malformed', async () => {
    await refused(verifier, undefined, 'missing');
    await refused(verifier, '', 'missing');
    await refused(verifier, 'Basic dXNlcjpwYXNz', 'missing');
    await refused(verifier, await hs(claims()), 'missing');
    await refused(verifier, 'Bearer', 'malformed');
    await refused(verifier, 'Bearer not-a-jwt', 'malformed');
    await refused(verifier, 'Bearer a.b', 'malformed');
    await refused(verifier, `Bearer ${base64url.encode('not json')}.${base64url.encode('{}')}.sig`, 'malformed');
  });

  it('refuses a token over 8 KB, even a validly signed one', async () => {
    await refused(verifier, `Bearer ${'a'.repeat(9000)}`, 'malformed');
    const big = await hs(claims({ pad: 'x'.repeat(8200) }));
    await refused(verifier, `Bearer ${big}`, 'malformed');
  });

  it('checks tid and sub', async () => {
    await refused(verifier, `Bearer ${await hs({ sub: 'alice', exp: now() + 60 })}`, 'bad_claims');
    await refused(verifier, `Bearer ${await hs({ tid: 't1', exp: now() + 60 })}`, 'bad_claims');
    await refused(verifier, `Bearer ${await hs(claims({ tid: 42 }))}`, 'bad_claims');
    await refused(verifier, `Bearer ${await hs(claims({ sub: { id: 'alice' } }))}`, 'bad_claims');
    await refused(verifier, `Bearer ${await hs(claims({ tid: '' }))}`, 'bad_claims');
    await refused(verifier, `Bearer ${await hs(claims({ tid: 't\n1' }))}`, 'bad_claims');
    await refused(verifier, `Bearer ${await hs(claims({ sub: 'ali\u0000ce' }))}`, 'bad_claims');
    await refused(verifier, `Bearer ${await hs(claims({ sub: 'ali\u009bce' }))}`, 'bad_claims');
    await refused(verifier, `Bearer ${await hs(claims({ tid: 'a'.repeat(129) }))}`, 'bad_claims');
    await refused(verifier, `Bearer ${await hs(claims({ sub: 's'.repeat(257) }))}`, 'bad_claims');
    await refused(verifier, `Bearer ${await hs(claims({ scope: ['service'] }))}`, 'bad_claims');
    const edge = await verifier.verify(`Bearer ${await hs(claims({ tid: 'a'.repeat(128), sub: 's'.repeat(256) }))}`);
    assert.equal(edge.tenantId.length, 128);
    assert.equal(edge.subject.length, 256);
  });

  it('reads the service scope', async () => {
    const scoped = async (scope?: string) => (await verifier.verify(`Bearer ${await hs(claims(scope === undefined ? {} : { scope }))}`)).service;
    assert.equal(await scoped('service'), true);
    assert.equal(await scoped('memory:read service'), true);
    assert.equal(await scoped('services'), false);
    assert.equal(await scoped(''), false);
    assert.equal(await scoped(), false);
  });
});

describe('createTokenVerifier: public keys', () => {
  it('accepts RS256 and PS256 with an RSA key file', async () => {
    const verifier = await createTokenVerifier({ publicKeyFile: rsaFile });
    assert.equal((await verifier.verify(`Bearer ${await sign(claims(), 'RS256', rsa.privateKey)}`)).subject, 'alice');
    assert.equal((await verifier.verify(`Bearer ${await sign(claims(), 'PS256', rsa.privateKey)}`)).subject, 'alice');
    await refused(verifier, `Bearer ${await sign(claims(), 'RS256', rsa2.privateKey)}`, 'bad_signature');
  });

  it('refuses HS256 keyed with the public key PEM (algorithm confusion), and alg none', async () => {
    const confused = await hs(claims(), rsaPem);
    await refused(await createTokenVerifier({ publicKeyFile: rsaFile }), `Bearer ${confused}`, 'bad_signature');
    // With a secret configured too, HS256 is checked against the secret only.
    await refused(await createTokenVerifier({ publicKeyFile: rsaFile, secret: SECRET }), `Bearer ${confused}`, 'bad_signature');
    const none = `${base64url.encode('{"alg":"none"}')}.${base64url.encode(JSON.stringify(claims()))}.`;
    await refused(await createTokenVerifier({ publicKeyFile: rsaFile }), `Bearer ${none}`, 'bad_signature');
  });

  it('accepts EdDSA with an Ed25519 key file and ES256 with a P-256 one, nothing else', async () => {
    const edVerifier = await createTokenVerifier({ publicKeyFile: edFile });
    assert.equal((await edVerifier.verify(`Bearer ${await sign(claims(), 'EdDSA', ed.privateKey)}`)).tenantId, 't1');
    await refused(edVerifier, `Bearer ${await sign(claims(), 'RS256', rsa.privateKey)}`, 'bad_signature');
    const ecVerifier = await createTokenVerifier({ publicKeyFile: ecFile });
    assert.equal((await ecVerifier.verify(`Bearer ${await sign(claims(), 'ES256', ec.privateKey)}`)).tenantId, 't1');
    await refused(ecVerifier, `Bearer ${await sign(claims(), 'EdDSA', ed.privateKey)}`, 'bad_signature');
  });

  it('accepts either a secret or a key when both are configured', async () => {
    const verifier = await createTokenVerifier({ publicKeyFile: edFile, secret: SECRET });
    assert.equal((await verifier.verify(`Bearer ${await hs(claims())}`)).subject, 'alice');
    assert.equal((await verifier.verify(`Bearer ${await sign(claims(), 'EdDSA', ed.privateKey)}`)).subject, 'alice');
    await refused(verifier, `Bearer ${await sign(claims({ exp: now() - 120 }), 'EdDSA', ed.privateKey)}`, 'expired');
  });

  it('verifies with a JWKS file, by kid or by trying each matching key', async () => {
    const jwk = (key: KeyObject, extra: Record<string, string>) => ({ ...key.export({ format: 'jwk' }), use: 'sig', ...extra });
    const jwksFile = writeFile(
      'jwks.json',
      JSON.stringify({ keys: [jwk(rsa.publicKey, { kid: 'r1', alg: 'RS256' }), jwk(rsa2.publicKey, { kid: 'r2', alg: 'RS256' }), jwk(ed.publicKey, { kid: 'e1' })] }),
    );
    const verifier = await createTokenVerifier({ jwksFile });
    assert.equal((await verifier.verify(`Bearer ${await sign(claims(), 'RS256', rsa2.privateKey, { kid: 'r2' })}`)).subject, 'alice');
    assert.equal((await verifier.verify(`Bearer ${await sign(claims(), 'EdDSA', ed.privateKey, { kid: 'e1' })}`)).subject, 'alice');
    assert.equal((await verifier.verify(`Bearer ${await sign(claims(), 'RS256', rsa2.privateKey)}`)).subject, 'alice');
    await refused(verifier, `Bearer ${await sign(claims(), 'RS256', rsa.privateKey, { kid: 'r2' })}`, 'bad_signature');
    await refused(verifier, `Bearer ${await sign(claims(), 'RS256', rsa.privateKey, { kid: 'nope' })}`, 'bad_signature');
    await refused(verifier, `Bearer ${await sign(claims(), 'ES256', ec.privateKey)}`, 'bad_signature');
    await refused(verifier, `Bearer ${await hs(claims(), rsaPem)}`, 'bad_signature');
  });

  it('checks issuer and audience when configured', async () => {
    const verifier = await createTokenVerifier({ secret: SECRET, issuer: 'https://idp.example', audience: 'relay' });
    const ok = await hs(claims({ iss: 'https://idp.example', aud: 'relay' }));
    assert.equal((await verifier.verify(`Bearer ${ok}`)).subject, 'alice');
    await refused(verifier, `Bearer ${await hs(claims({ iss: 'https://evil.example', aud: 'relay' }))}`, 'bad_claims');
    await refused(verifier, `Bearer ${await hs(claims({ iss: 'https://idp.example', aud: 'other' }))}`, 'bad_claims');
    await refused(verifier, `Bearer ${await hs(claims())}`, 'bad_claims');
  });

  it('refuses configurations it cannot verify with safely', async () => {
    await assert.rejects(createTokenVerifier({}), ConfigError);
    await assert.rejects(createTokenVerifier({ secret: 'short' }), ConfigError);
    await assert.rejects(createTokenVerifier({ publicKeyFile: join(dir, 'absent.pem') }), /RELAY_JWT_PUBLIC_KEY_FILE .*ENOENT/);
    const privateFile = writeFile('private.pem', ed.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    await assert.rejects(createTokenVerifier({ publicKeyFile: privateFile }), /private key/);
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
    await assert.rejects(createTokenVerifier({ publicKeyFile: writeFile('small.pem', pem(small.publicKey)) }), /2048/);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    await assert.rejects(createTokenVerifier({ publicKeyFile: writeFile('p384.pem', pem(p384.publicKey)) }), /secp384r1/);
    const privateJwks = writeFile('private-jwks.json', JSON.stringify({ keys: [ed.privateKey.export({ format: 'jwk' })] }));
    await assert.rejects(createTokenVerifier({ jwksFile: privateJwks }), /private or symmetric/);
    await assert.rejects(createTokenVerifier({ jwksFile: writeFile('bad-jwks.json', '{"keys": []}') }), /JSON Web Key Set/);
  });
});

describe('mintToken and parseTtl', () => {
  it('mints user and service tokens the verifier accepts', async () => {
    const cfg: AuthConfig = { secret: SECRET, issuer: 'relay-dev', audience: 'relay' };
    const verifier = await createTokenVerifier(cfg);
    const user = await mintToken({ secret: SECRET, tenant: 'acme', user: 'bob', ttlSeconds: 60, issuer: 'relay-dev', audience: 'relay' });
    assert.deepEqual(await verifier.verify(`Bearer ${user}`), { tenantId: 'acme', subject: 'bob', service: false });
    const service = await mintToken({ secret: SECRET, tenant: 'acme', service: true, ttlSeconds: 60, issuer: 'relay-dev', audience: 'relay' });
    assert.deepEqual(await verifier.verify(`Bearer ${service}`), { tenantId: 'acme', subject: 'service', service: true });
  });

  it('refuses bad mint options', async () => {
    const base = { secret: SECRET, tenant: 'acme', ttlSeconds: 60 };
    await assert.rejects(mintToken({ ...base }), RangeError);
    await assert.rejects(mintToken({ ...base, user: 'bob', service: true }), RangeError);
    await assert.rejects(mintToken({ ...base, user: 'b\nob' }), /control characters/);
    await assert.rejects(mintToken({ ...base, tenant: 'a'.repeat(129), user: 'bob' }), /at most 128/);
    await assert.rejects(mintToken({ ...base, user: 'bob', ttlSeconds: 0 }), RangeError);
    await assert.rejects(mintToken({ ...base, user: 'bob', secret: 'short' }), RangeError);
  });

  it('parses lifetimes within 1 s..365 d', () => {
    assert.equal(parseTtl('30s'), 30);
    assert.equal(parseTtl('15m'), 900);
    assert.equal(parseTtl('1h'), 3600);
    assert.equal(parseTtl('7d'), 604_800);
    assert.equal(parseTtl('90'), 90);
    assert.equal(parseTtl('365d'), 31_536_000);
    for (const bad of ['', '0', '0s', '1w', '366d', '-1', '1.5h', 'h', '1 h', '99999999999']) {
      assert.throws(() => parseTtl(bad), RangeError, bad);
    }
  });
});

describe('signingSecret', () => {
  it('creates the data folder secret 0600 and reuses it', () => {
    const config = loadConfig({ RELAY_DATA_DIR: join(dir, 'data-a') });
    const first = signingSecret(config);
    assert.equal(first.source, 'file');
    assert.equal(first.created, true);
    assert.ok(first.secret && first.secret.length >= 32);
    assert.equal(statSync(join(dir, 'data-a', 'jwt.secret')).mode & 0o777, 0o600);
    const second = signingSecret(config);
    assert.deepEqual({ ...second }, { ...first, created: false });
  });

  it('refuses a secret file that group or others can read', () => {
    const data = join(dir, 'data-b');
    mkdirSync(data);
    const file = join(data, 'jwt.secret');
    writeFileSync(file, `${randomBytes(32).toString('base64url')}\n`);
    chmodSync(file, 0o644);
    assert.throws(() => signingSecret(loadConfig({ RELAY_DATA_DIR: data })), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /mode 0644.*chmod 600/);
      return true;
    });
  });

  it('prefers RELAY_JWT_SECRET, gives memory:// a per-process secret, and none beside a public key', () => {
    assert.deepEqual(signingSecret(loadConfig({ RELAY_JWT_SECRET: SECRET, RELAY_DATA_DIR: join(dir, 'data-c') })), { secret: SECRET, created: false, source: 'env' });
    assert.equal(existsSync(join(dir, 'data-c')), false);
    const memory = loadConfig({ RELAY_DATA_DIR: 'memory://' });
    const a = signingSecret(memory);
    assert.equal(a.source, 'ephemeral');
    assert.notEqual(a.secret, signingSecret(memory).secret);
    const keyed = signingSecret(loadConfig({ RELAY_DATA_DIR: join(dir, 'data-d'), RELAY_JWT_PUBLIC_KEY_FILE: rsaFile }));
    assert.deepEqual(keyed, { secret: null, created: false, source: 'none' });
    assert.equal(existsSync(join(dir, 'data-d')), false);
  });

  it('asks a server store for a secret or a key', () => {
    const url = 'postgres://relay@localhost/relay';
    assert.throws(() => signingSecret(loadConfig({ DATABASE_URL: url })), /RELAY_JWT_SECRET/);
    assert.equal(signingSecret(loadConfig({ DATABASE_URL: url, RELAY_JWT_JWKS_FILE: join(dir, 'jwks.json') })).source, 'none');
  });
});

describe('relay token', () => {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RELAY_') && k !== 'DATABASE_URL'));
  const dataDir = join(dir, 'cli-data');
  const relay = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const run = spawnSync(process.execPath, ['bin/relay.mjs', 'token', ...args], {
      env: { ...clean, RELAY_DATA_DIR: dataDir, ...env },
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { code: run.status, stdout: run.stdout, stderr: run.stderr, token: run.stdout.trimEnd().split('\n').at(-1) ?? '' };
  };
  const verifierForDataDir = async () => {
    const config = loadConfig({ RELAY_DATA_DIR: dataDir });
    return createTokenVerifier(config.auth, { devSecret: signingSecret(config).secret ?? undefined });
  };

  it('mints a user token the data folder secret verifies', async () => {
    const before = now();
    const run = relay(['--tenant', 't1', '--user', 'alice', '--ttl', '1h']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /created the JWT secret/);
    assert.equal(statSync(join(dataDir, 'jwt.secret')).mode & 0o777, 0o600);
    assert.deepEqual(await (await verifierForDataDir()).verify(`Bearer ${run.token}`), { tenantId: 't1', subject: 'alice', service: false });
    const payload = JSON.parse(Buffer.from(run.token.split('.')[1]!, 'base64url').toString()) as { exp: number; iat: number };
    assert.equal(payload.exp - payload.iat, 3600);
    assert.ok(payload.exp >= before + 3600);
  });

  it('mints a service token with the same secret', async () => {
    const run = relay(['--tenant', 't1', '--service']);
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.stderr, /created the JWT secret/);
    assert.deepEqual(await (await verifierForDataDir()).verify(`Bearer ${run.token}`), { tenantId: 't1', subject: 'service', service: true });
  });

  it('exits 2 on bad usage', () => {
    for (const [args, message] of [
      [['--user', 'alice'], /--tenant is required/],
      [['--tenant', 't1', '--user', 'alice', '--service'], /exactly one of --user and --service/],
      [['--tenant', 't1'], /exactly one of --user and --service/],
      [['--tenant', 't1', '--user', 'alice', '--ttl', '2w'], /--ttl must look like/],
      [['--tenant', 't1', '--user', 'alice', '--ttl', '400d'], /--ttl must be between/],
      [['--tenant', 'a'.repeat(129), '--service'], /--tenant must be at most 128/],
      [['--tenant', 't1', '--user', 'al\u0007ice'], /--user must not contain control characters/],
    ] as const) {
      const run = relay([...args]);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message);
      assert.equal(run.stdout, '');
    }
  });

  it('cannot mint with only a public key configured', () => {
    const run = relay(['--tenant', 't1', '--user', 'alice'], { RELAY_JWT_PUBLIC_KEY_FILE: rsaFile });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cannot mint/);
    assert.equal(run.stdout, '');
  });
});

describe('refusal messages', () => {
  it('never carry the token or the secret', () => {
    assert.ok(messages.length > 30);
    for (const { message, token } of messages) {
      assert.ok(!message.includes(SECRET));
      for (const part of token.replace(/^\S+\s+/, '').split('.')) {
        if (part.length >= 8) assert.ok(!message.includes(part), message);
      }
    }
  });
});
