// Verify a key-signed Sigstore bundle whose transparency log entry is a Rekor v2 one, with @sigstore/verify offline.
//
// usage: node verify-bundle-rekor-v2.mjs BUNDLE.json PUBLIC_KEY.pem TRUSTED_ROOT.json [ARTIFACT]
//
// Like verify-bundle-tlog.mjs (tlogThreshold 1: the checkpoint against the trusted root's log key, the inclusion
// proof against the checkpoint's root, and the v0.0.2 entry body against the bundle's signature and digest), but
// with timestampThreshold 0: a Rekor v2 entry carries no signed time (no SET, integratedTime 0) and a key-signed
// bundle needs none. ARTIFACT is the signed blob for messageSignature (hashedrekord) bundles.
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
  out(2, { verified: false, code: 'USAGE', message: 'usage: verify-bundle-rekor-v2.mjs BUNDLE KEY TRUSTED_ROOT [ARTIFACT]' });
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
  const verifier = new Verifier(trust, { tlogThreshold: 1, ctlogThreshold: 0, tsaThreshold: 0, timestampThreshold: 0 });
  stage = 'verify';
  const artifact = artifactPath ? readFileSync(artifactPath) : undefined;
  verifier.verify(toSignedEntity(bundle, artifact));
  const [entry] = bundle.verificationMaterial.tlogEntries;
  out(0, { verified: true, tlogEntries: bundle.verificationMaterial.tlogEntries.length,
    kind: entry.kindVersion.kind, version: entry.kindVersion.version });
} catch (err) {
  out(1, { verified: false, stage, code: err?.code ?? err?.name ?? 'ERROR', message: String(err?.message ?? err) });
}
