#!/usr/bin/env node
// Vendors the AES-256 / 96-bit IV / 128-bit tag groups of Wycheproof's aes_gcm_test.json
// as test/crypto/vectors/wycheproof-aes-gcm-256.json (see test/crypto/vectors/README.md).
//
//   node scripts/extract-wycheproof.mjs PATH/TO/aes_gcm_test.json "librust-wycheproof-dev 0.5.0-2"
//
// Groups and tests are kept exactly as upstream has them; only other groups are dropped
// and a `provenance` object is added.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

const [src, debianPackage] = process.argv.slice(2);
if (!src || !debianPackage) {
  console.error('usage: extract-wycheproof.mjs AES_GCM_TEST_JSON "DEBIAN_PACKAGE VERSION"');
  process.exit(2);
}
const bytes = readFileSync(src);
const upstream = JSON.parse(bytes.toString('utf8'));
const testGroups = upstream.testGroups.filter((g) => g.keySize === 256 && g.ivSize === 96 && g.tagSize === 128);
const tests = testGroups.flatMap((g) => g.tests);
const out = {
  provenance: {
    source: 'Project Wycheproof (https://github.com/google/wycheproof), testvectors/aes_gcm_test.json',
    debianPackage,
    upstreamFile: 'src/data/aes_gcm_test.json of the wycheproof crate 0.5.0, a copy of Wycheproof testvectors/aes_gcm_test.json',
    upstreamSha256: createHash('sha256').update(bytes).digest('hex'),
    license: 'Apache-2.0, Copyright 2017-2023 Google Inc.',
    filter: 'testGroups with keySize 256, ivSize 96, tagSize 128; groups and tests unchanged',
    counts: {
      valid: tests.filter((t) => t.result === 'valid').length,
      invalid: tests.filter((t) => t.result === 'invalid').length,
      acceptable: tests.filter((t) => t.result === 'acceptable').length,
    },
  },
  algorithm: upstream.algorithm,
  generatorVersion: upstream.generatorVersion,
  schema: upstream.schema,
  notes: upstream.notes,
  testGroups,
};
writeFileSync('test/crypto/vectors/wycheproof-aes-gcm-256.json', `${JSON.stringify(out, null, 2)}\n`);
console.log(`wrote ${tests.length} tests in ${testGroups.length} group(s):`, out.provenance.counts);
