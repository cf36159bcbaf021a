// Verify a key-signed Sigstore bundle with @sigstore/verify, offline (an independent check of chainmail's bundles).
//
// usage: node verify-bundle.mjs BUNDLE.json PUBLIC_KEY.pem TRUSTED_ROOT.json
//
// Trust material comes from TRUSTED_ROOT.json (e.g. the production root embedded in sigstore-python) with a
// key finder that returns PUBLIC_KEY.pem for any hint, and no tlog/ctlog/timestamp thresholds: this checks
// the bundle format and the DSSE signature, as `cosign verify --key --insecure-ignore-tlog` would.
//
// Prints one JSON line. Exit 0: verified. Exit 1: rejected (with the library's error code). Exit 2: bad usage
// or missing modules.
import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

function out(code, doc) {
  process.stdout.write(JSON.stringify(doc) + '\n');
  process.exit(code);
}

const [bundlePath, keyPath, rootPath] = process.argv.slice(2);
if (!bundlePath || !keyPath || !rootPath) {
  out(2, { verified: false, code: 'USAGE', message: 'usage: verify-bundle.mjs BUNDLE.json PUBLIC_KEY.pem TRUSTED_ROOT.json' });
}

let lib;
try {
  lib = {
    ...require('@sigstore/verify'),
    bundleFromJSON: require('@sigstore/bundle').bundleFromJSON,
    TrustedRoot: require('@sigstore/protobuf-specs').TrustedRoot,
  };
} catch (err) {
  out(2, { verified: false, code: 'MODULES', message: String(err && err.message) });
}

const hints = [];
const key = createPublicKey(readFileSync(keyPath, 'utf8'));
const trust = lib.toTrustMaterial(lib.TrustedRoot.fromJSON(JSON.parse(readFileSync(rootPath, 'utf8'))), (hint) => {
  hints.push(hint);
  return { publicKey: key, validFor: () => true };
});
const verifier = new lib.Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, tsaThreshold: 0, timestampThreshold: 0 });

let stage = 'parse';
try {
  const json = JSON.parse(readFileSync(bundlePath, 'utf8'));
  stage = 'bundle';
  const bundle = lib.bundleFromJSON(json);
  stage = 'verify';
  verifier.verify(lib.toSignedEntity(bundle));
  out(0, { verified: true, hints, mediaType: bundle.mediaType, payloadType: bundle.content?.dsseEnvelope?.payloadType ?? null });
} catch (err) {
  out(1, { verified: false, stage, hints, code: err?.code ?? err?.name ?? 'ERROR', message: String(err?.message ?? err) });
}
