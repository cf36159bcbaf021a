// Sign an in-toto statement keylessly with sigstore-js (@sigstore/sign), as a third-party signer would.
//
// usage: node sign-with-sigstore-js.mjs STACK_URL TOKEN_FILE STATEMENT.json [--certificate-chain]
//
// Public API only: DSSEBundleBuilder over a FulcioSigner (ephemeral key, certificate from STACK_URL's
// `POST /api/v2/signingCert` for the identity token read from TOKEN_FILE) with one RekorWitness (a dsse
// entry in STACK_URL's Rekor v1 log). The payload type is application/vnd.in-toto+json. Prints the
// Sigstore bundle on stdout, nothing else: v0.3 JSON with a single `certificate` (sigstore-js's default), or
// with --certificate-chain the v0.2 form (`x509CertificateChain`) that the builder's certificateChain option makes.
//
// Exit 0: printed. Exit 1: signing failed (the error on stderr). Exit 2: bad usage.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const npmDir = process.env.CHAINMAIL_NPM_DIR || join(dirname(fileURLToPath(import.meta.url)), '..', 'js');
const require = createRequire(join(npmDir, 'package.json'));

const [url, tokenPath, statementPath, flag] = process.argv.slice(2);
if (!url || !tokenPath || !statementPath || (flag !== undefined && flag !== '--certificate-chain')) {
  process.stderr.write('usage: sign-with-sigstore-js.mjs STACK_URL TOKEN_FILE STATEMENT.json [--certificate-chain]\n');
  process.exit(2);
}
const { DSSEBundleBuilder, FulcioSigner, RekorWitness } = require('@sigstore/sign');
const { bundleToJSON } = require('@sigstore/bundle');

const token = readFileSync(tokenPath, 'utf8').trim();
const identityProvider = { getToken: async () => token };
const builder = new DSSEBundleBuilder({
  signer: new FulcioSigner({ fulcioBaseURL: url, identityProvider, retry: 0, timeout: 10000 }),
  witnesses: [new RekorWitness({ rekorBaseURL: url, entryType: 'dsse', retry: 0, timeout: 10000 })],
  certificateChain: flag === '--certificate-chain',
});
try {
  const bundle = await builder.create({ data: readFileSync(statementPath), type: 'application/vnd.in-toto+json' });
  process.stdout.write(JSON.stringify(bundleToJSON(bundle)) + '\n');
} catch (err) {
  process.stderr.write(`sigstore-js signing failed: ${err?.code ?? err?.name ?? 'Error'}: ${err?.message ?? err}` +
    (err?.cause ? ` (cause: ${err.cause?.message ?? err.cause})` : '') + '\n');
  process.exit(1);
}
