// Verify a key-signed Sigstore bundle WITH its transparency log entry, using @sigstore/verify offline.
//
// usage: node verify-bundle-tlog.mjs BUNDLE.json PUBLIC_KEY.pem TRUSTED_ROOT.json [ARTIFACT]
//
// Unlike tests/js/verify-bundle.mjs (no thresholds), this requires one verified tlog entry (tlogThreshold 1:
// SET against the trusted root's Rekor key, inclusion proof + checkpoint, and the entry body matching the
// bundle's signature and payload digest) and takes the signing time from it (timestampThreshold 1). A keyless
// bundle (certificate) must chain to the trusted root's CA and carry an SCT of its CT log (ctlogThreshold 1).
// ARTIFACT is the signed blob for messageSignature (hashedrekord) bundles.
//
// Prints one JSON line. Exit 0: verified. Exit 1: rejected (with the library's error code). Exit 2: bad usage.
import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const npmDir = process.env.CHAINMAIL_NPM_DIR || join(dirname(fileURLToPath(import.meta.url)), '..', 'js');
const require = createRequire(join(npmDir, 'package.json'));

function out(code, doc) {
  process.stdout.write(JSON.stringify(doc) + '\n');
  process.exit(code);
}

const [bundlePath, keyPath, rootPath, artifactPath] = process.argv.slice(2);
if (!bundlePath || !keyPath || !rootPath) {
  out(2, { verified: false, code: 'USAGE', message: 'usage: verify-bundle-tlog.mjs BUNDLE KEY TRUSTED_ROOT [ARTIFACT]' });
}
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');
const { bundleFromJSON } = require('@sigstore/bundle');
const { TrustedRoot } = require('@sigstore/protobuf-specs');

const key = createPublicKey(readFileSync(keyPath, 'utf8'));
const trust = toTrustMaterial(TrustedRoot.fromJSON(JSON.parse(readFileSync(rootPath, 'utf8'))),
  () => ({ publicKey: key, validFor: () => true }));

let stage = 'parse';
try {
  const bundle = bundleFromJSON(JSON.parse(readFileSync(bundlePath, 'utf8')));
  // A keyless bundle's certificate must also carry an SCT from the trusted root's CT log.
  const keyless = bundle.verificationMaterial.content.$case !== 'publicKey';
  const verifier = new Verifier(trust, {
    tlogThreshold: 1, ctlogThreshold: keyless ? 1 : 0, tsaThreshold: 0, timestampThreshold: 1,
  });
  stage = 'verify';
  const artifact = artifactPath ? readFileSync(artifactPath) : undefined;
  verifier.verify(toSignedEntity(bundle, artifact));
  out(0, { verified: true, tlogEntries: bundle.verificationMaterial.tlogEntries.length, keyless });
} catch (err) {
  out(1, { verified: false, stage, code: err?.code ?? err?.name ?? 'ERROR', message: String(err?.message ?? err) });
}
