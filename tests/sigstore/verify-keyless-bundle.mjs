// Verify a keyless Sigstore bundle with @sigstore/verify, offline, as `cosign verify --certificate-identity` would.
//
// usage: node verify-keyless-bundle.mjs BUNDLE.json TRUSTED_ROOT.json IDENTITY ISSUER
//
// Thresholds: one verified tlog entry (SET, inclusion proof + checkpoint, body matching the bundle), one
// SCT from the trusted root's CT log in the certificate (ctlogThreshold 1), the signing time taken from the
// tlog entry (timestampThreshold 1); the certificate must chain to the trusted root's Fulcio CA, and its
// SAN and OIDC issuer extension must equal IDENTITY and ISSUER.
//
// Prints one JSON line. Exit 0: verified. Exit 1: rejected (with the library's error code). Exit 2: bad usage.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const npmDir = process.env.CHAINMAIL_NPM_DIR || join(dirname(fileURLToPath(import.meta.url)), '..', 'js');
const require = createRequire(join(npmDir, 'package.json'));

function out(code, doc) {
  process.stdout.write(JSON.stringify(doc) + '\n');
  process.exit(code);
}

const [bundlePath, rootPath, identity, issuer] = process.argv.slice(2);
if (!bundlePath || !rootPath || !identity || !issuer) {
  out(2, { verified: false, code: 'USAGE', message: 'usage: verify-keyless-bundle.mjs BUNDLE TRUSTED_ROOT IDENTITY ISSUER' });
}
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');
const { bundleFromJSON } = require('@sigstore/bundle');
const { TrustedRoot } = require('@sigstore/protobuf-specs');

const trust = toTrustMaterial(TrustedRoot.fromJSON(JSON.parse(readFileSync(rootPath, 'utf8'))));
let stage = 'parse';
try {
  const bundle = bundleFromJSON(JSON.parse(readFileSync(bundlePath, 'utf8')));
  if (bundle.verificationMaterial.content.$case === 'publicKey') throw new Error('not a keyless bundle');
  const verifier = new Verifier(trust, { tlogThreshold: 1, ctlogThreshold: 1, tsaThreshold: 0, timestampThreshold: 1 });
  stage = 'verify';
  const signer = verifier.verify(toSignedEntity(bundle), { subjectAlternativeName: identity, extensions: { issuer } });
  out(0, { verified: true, identity: signer.identity ?? null, tlogEntries: bundle.verificationMaterial.tlogEntries.length });
} catch (err) {
  out(1, { verified: false, stage, code: err?.code ?? err?.name ?? 'ERROR', message: String(err?.message ?? err) });
}
