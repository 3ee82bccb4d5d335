import { runCryptoBench } from '../crypto/index.ts';

/** `relay bench crypto`: one core, one run; the last line printed is the JSON summary. */
export async function runBenchCrypto(json: boolean): Promise<void> {
  const result = await runCryptoBench();
  if (!json) {
    console.log(`seal 1 KiB   ${result.seal_ops_s_1k} ops/s`);
    console.log(`open 1 KiB   ${result.open_ops_s_1k} ops/s`);
    console.log(`bare AES-GCM ${result.raw_ops_s_1k} ops/s (createCipheriv, the floor)`);
    console.log(`ratio        ${result.ratio_1k}`);
    console.log(`seal 16 KiB  ${result.seal_mb_s_16k} MB/s`);
    console.log(`hmacUser     ${result.hmac_ops_s} ops/s`);
    console.log(`transform    ${result.transform_ns_per_vector} ns/vector (384-d, VectorTransform#apply)`);
    console.log(`dense 384²   ${result.dense_ns_per_vector} ns/vector (matrix–vector product, the baseline)`);
    console.log(`ratio        ${result.transform_vs_dense} (transform / dense)`);
    console.log(`derive       ${result.derive_ns} ns (VectorTransform.derive, once per user and data key version)`);
  }
  console.log(JSON.stringify({ bench: 'crypto', ...result }));
}
