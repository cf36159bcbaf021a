// A local Sigstore stack for chainmail's tests: Fulcio, Rekor (v1 API) and a TSA on one loopback port.
//
// usage: node server.mjs PORT OUT_DIR [LIFETIME_SECONDS]
//   PORT 0 picks a free port. Writes OUT_DIR/trusted_root.json and prints one JSON line on stdout:
//   {"url": "http://127.0.0.1:PORT", "trustedRoot": "OUT_DIR/trusted_root.json", "pid": N}
//   Exits after LIFETIME_SECONDS (default 600) or when its parent process goes away.
//
// What comes from @sigstore/mock (sigstore-js's own test double, npm, Apache-2.0):
//   - the ephemeral Fulcio CA + CT log and `POST /api/v2/signingCert` (fulcioHandler),
//   - the transparency log's signing: body canonicalisation, logID, logIndex, integratedTime and the
//     Signed Entry Timestamp of `POST /api/v1/log/entries` (rekorHandler over initializeTLog),
//   - the timestamp authority `POST /api/v1/timestamp` (tsaHandler).
// What is chainmail's (this file), built over the entries the mock issued:
//   - dsse v0.0.1 canonicalisation as real Rekor stores it (envelopeHash, payloadHash, signatures[signature,
//     verifier as canonical PEM]) and its signature check, done before the body is handed to the mock's log;
//   - entry UUIDs = 16-hex tree id + RFC 6962 leaf hash of the body (the mock's are random), 409 + Location for
//     an entry already logged;
//   - an append-only RFC 6962 Merkle tree over the bodies: every response carries an inclusion proof against the
//     current tree and a checkpoint (signed note) signed with the log key (the mock's proof is a one-leaf tree);
//   - `GET /api/v1/log/entries/{uuid}`, `GET /api/v1/log/entries?logIndex=N`, `GET /api/v1/log`,
//     `POST /api/v1/index/retrieve` (by hash: artifact digest, payload/envelope hash, in-toto subject digests;
//     by public key);
//   - `trusted_root.json` (Sigstore TrustedRoot) built from the keys handed to the mock;
//   - a test hook `POST /__test__/fault {"mode": …}` that spoils the next entry response (bad-set, bad-body,
//     other-entry, bad-proof), answers the next request with 400 (status-400) or every request with 500 until
//     the mode is reset with {"mode": null} (status-500).
// Not implemented: hashedrekord signature checks (the server gets only the digest), consistency proofs,
// /api/v1/log/entries/retrieve, sharding.
import { createHash, createPublicKey, generateKeyPairSync, sign, verify, X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const npmDir = process.env.CHAINMAIL_NPM_DIR || join(here, '..', 'js');
const require = createRequire(join(npmDir, 'package.json'));
const mock = require('@sigstore/mock');
const canonicalize = require('canonicalize'); // @sigstore/mock's own RFC 8785 dependency
const { TrustedRoot, HashAlgorithm, PublicKeyDetails } = require('@sigstore/protobuf-specs');

const [portArg, outDir, lifetimeArg] = process.argv.slice(2);
if (portArg === undefined || !outDir) {
  process.stderr.write('usage: node server.mjs PORT OUT_DIR [LIFETIME_SECONDS]\n');
  process.exit(2);
}
const lifetime = Number(lifetimeArg || 600);
const MAX_BODY = 4 * 1024 * 1024;

const sha256 = (...parts) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const leafHash = (body) => sha256(Buffer.from([0]), body);
const nodeHash = (l, r) => sha256(Buffer.from([1]), l, r);

// RFC 6962 §2.1: Merkle tree hash and audit path over leaf hashes.
function largestPow2Below(n) {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}
function treeHash(leaves) {
  if (leaves.length === 0) return sha256(Buffer.alloc(0));
  if (leaves.length === 1) return leaves[0];
  const k = largestPow2Below(leaves.length);
  return nodeHash(treeHash(leaves.slice(0, k)), treeHash(leaves.slice(k)));
}
function auditPath(m, leaves) {
  if (leaves.length <= 1) return [];
  const k = largestPow2Below(leaves.length);
  if (m < k) return [...auditPath(m, leaves.slice(0, k)), treeHash(leaves.slice(k))];
  return [...auditPath(m - k, leaves.slice(k)), treeHash(leaves.slice(0, k))];
}

const ecKeys = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });
const canonicalPem = (b64) => {
  const pem = Buffer.from(b64, 'base64').toString('utf8');
  if (pem.includes('BEGIN CERTIFICATE')) return new X509Certificate(pem).publicKey;
  return createPublicKey(pem);
};
// Real Rekor stores a verifier as its canonical PEM (Go's encoding: 64-column lines), whatever the client
// sent; sigstore-js, for one, sends the certificate's base64 on a single line.
const canonicalVerifier = (b64) => {
  const pem = Buffer.from(b64, 'base64').toString('utf8');
  const text = pem.includes('BEGIN CERTIFICATE')
    ? new X509Certificate(pem).toString()
    : createPublicKey(pem).export({ format: 'pem', type: 'spki' });
  return Buffer.from(text, 'utf8').toString('base64');
};
const keyId = (b64) => {
  try {
    return 'sha256:' + sha256(canonicalPem(b64).export({ format: 'der', type: 'spki' })).toString('hex');
  } catch {
    return null;
  }
};

function pae(type, payload) {
  const t = Buffer.from(type, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${t.length} `), t, Buffer.from(` ${payload.length} `), payload]);
}

// Real Rekor stores a dsse entry as hashes + signatures, never the proposed envelope.
function canonicalDsse(spec) {
  const proposed = spec?.proposedContent;
  if (!proposed || typeof proposed.envelope !== 'string' || !Array.isArray(proposed.verifiers)) {
    throw new Error('dsse: proposedContent.envelope (string) and verifiers are required');
  }
  const env = JSON.parse(proposed.envelope);
  const payload = Buffer.from(env.payload || '', 'base64');
  const message = pae(env.payloadType || '', payload);
  const signatures = [];
  for (const s of env.signatures || []) {
    const sig = Buffer.from(s.sig || '', 'base64');
    const verifier = proposed.verifiers.find((v) => {
      try {
        const key = canonicalPem(v);
        return verify(key.asymmetricKeyType === 'ed25519' ? null : 'sha256', message, key, sig);
      } catch {
        return false;
      }
    });
    if (!verifier) throw new Error('all signatures must have a key that verifies it');
    signatures.push({ signature: s.sig, verifier: canonicalVerifier(verifier) });
  }
  if (signatures.length === 0) throw new Error('dsse: envelope has no signatures');
  signatures.sort((a, b) => (a.signature < b.signature ? -1 : a.signature > b.signature ? 1 : 0));
  const keys = [sha256(payload).toString('hex'), sha256(Buffer.from(proposed.envelope)).toString('hex')];
  if (env.payloadType === 'application/vnd.in-toto+json') {
    try {
      for (const subject of JSON.parse(payload.toString('utf8')).subject || []) {
        for (const [alg, value] of Object.entries(subject.digest || {})) keys.push(`${alg}:${value}`);
      }
    } catch { /* not a statement: hashes only */ }
  }
  return {
    entry: {
      apiVersion: '0.0.1',
      kind: 'dsse',
      spec: {
        envelopeHash: { algorithm: 'sha256', value: keys[1] },
        payloadHash: { algorithm: 'sha256', value: keys[0] },
        signatures,
      },
    },
    indexKeys: keys.map((k) => (k.includes(':') ? k : `sha256:${k}`)).concat(signatures.map((s) => keyId(s.verifier))),
  };
}

function canonicalHashedRekord(spec) {
  const value = spec?.data?.hash?.value;
  const key = spec?.signature?.publicKey?.content;
  if (spec?.data?.hash?.algorithm !== 'sha256' || typeof value !== 'string' || !/^[0-9a-f]{64}$/.test(value)) {
    throw new Error('hashedrekord: spec.data.hash must be a sha256 hex digest');
  }
  if (typeof spec?.signature?.content !== 'string' || typeof key !== 'string' || !keyId(key)) {
    throw new Error('hashedrekord: signature.content and a PEM publicKey.content are required');
  }
  return { entry: null, indexKeys: [`sha256:${value}`, keyId(key)] };
}

async function main() {
  const keys = { ca: ecKeys(), ctlog: ecKeys(), tlog: ecKeys(), tsa: ecKeys() };
  const server = createServer();
  await new Promise((ok) => server.listen(Number(portArg), '127.0.0.1', ok));
  const url = `http://127.0.0.1:${server.address().port}`;

  const ctLog = await mock.initializeCTLog(keys.ctlog);
  const ca = await mock.initializeCA(keys.ca, ctLog);
  const tlog = await mock.initializeTLog(url, keys.tlog);
  const tsa = await mock.initializeTSA(keys.tsa);
  const fulcio = mock.fulcioHandler(ca);
  const rekor = mock.rekorHandler(tlog);
  const timestamp = mock.tsaHandler(tsa);

  const logID = sha256(tlog.publicKey);
  const treeID = BigInt('0x' + logID.subarray(0, 8).toString('hex')) & 0x7fffffffffffffffn;
  const treePrefix = treeID.toString(16).padStart(16, '0');
  const origin = `${new URL(url).host} - ${treeID}`;
  const leaves = []; // leaf hashes in log order
  const byLeaf = new Map(); // leaf hex -> {entry (the mock's), position, indexKeys}
  const byIndex = new Map(); // global logIndex -> leaf hex
  let fault = null;

  function checkpoint(size, root) {
    const note = `${origin}\n${size}\n${root.toString('base64')}\nTimestamp: ${BigInt(Date.now()) * 1000000n}\n`;
    const sig = sign('sha256', Buffer.from(note), keys.tlog.privateKey);
    return `${note}\n\u2014 ${new URL(url).host} ${Buffer.concat([logID.subarray(0, 4), sig]).toString('base64')}\n`;
  }

  function present(leaf) {
    const stored = byLeaf.get(leaf);
    const size = leaves.length;
    const root = treeHash(leaves);
    const entry = structuredClone(stored.entry);
    entry.verification.inclusionProof = {
      logIndex: stored.position,
      treeSize: size,
      rootHash: root.toString('hex'),
      hashes: auditPath(stored.position, leaves).map((h) => h.toString('hex')),
      checkpoint: checkpoint(size, root),
    };
    return spoil({ [treePrefix + leaf]: entry });
  }

  // The test hook: damage the next entry response the way a broken or lying log would.
  function spoil(doc) {
    const mode = fault;
    fault = null;
    const [uuid] = Object.keys(doc);
    const entry = doc[uuid];
    if (mode === 'bad-set') {
      const set = Buffer.from(entry.verification.signedEntryTimestamp, 'base64');
      set[set.length - 1] ^= 1;
      entry.verification.signedEntryTimestamp = set.toString('base64');
    } else if (mode === 'bad-body') {
      const body = JSON.parse(Buffer.from(entry.body, 'base64'));
      body.spec.signature ? (body.spec.signature.content = Buffer.from('forged').toString('base64'))
        : (body.spec.payloadHash.value = '0'.repeat(64));
      entry.body = Buffer.from(JSON.stringify(body)).toString('base64');
    } else if (mode === 'bad-proof') {
      entry.verification.inclusionProof.rootHash = '0'.repeat(64);
    } else if (mode === 'other-entry') {
      const other = [...byLeaf.keys()].find((k) => treePrefix + k !== uuid);
      if (other) {
        fault = null;
        return present(other);
      }
    }
    return doc;
  }

  function entryByUuid(id) {
    const m = /^(?:[0-9a-f]{16})?([0-9a-f]{64})$/.exec(id);
    return m && byLeaf.has(m[1]) ? m[1] : null;
  }

  async function createEntry(bodyText) {
    let proposed;
    let canonical;
    try {
      proposed = JSON.parse(bodyText);
      if (proposed.kind === 'dsse' && proposed.apiVersion === '0.0.1') canonical = canonicalDsse(proposed.spec);
      else if (proposed.kind === 'hashedrekord' && proposed.apiVersion === '0.0.1') {
        canonical = canonicalHashedRekord(proposed.spec);
      } else throw new Error(`unsupported entry kind ${proposed.kind} ${proposed.apiVersion}`);
    } catch (e) {
      return [400, { code: 400, message: String(e.message) }];
    }
    const toLog = canonical.entry || proposed;
    // The mock canonicalises (RFC 8785) before signing; compute the same bytes to detect duplicates.
    const leaf = leafHash(Buffer.from(canonicalize(toLog))).toString('hex');
    if (byLeaf.has(leaf)) {
      return [409, { code: 409, message: `An equivalent entry already exists in the transparency log with UUID ${treePrefix + leaf}` },
        { Location: `/api/v1/log/entries/${treePrefix + leaf}` }];
    }
    const result = await rekor.fn(JSON.stringify(toLog));
    if (result.statusCode !== 201) return [result.statusCode, { code: result.statusCode, message: String(result.response) }];
    const [entry] = Object.values(JSON.parse(result.response));
    if (leafHash(Buffer.from(entry.body, 'base64')).toString('hex') !== leaf) {
      return [500, { code: 500, message: 'canonical body mismatch' }];
    }
    byLeaf.set(leaf, { entry, position: leaves.length, indexKeys: canonical.indexKeys.filter(Boolean) });
    byIndex.set(entry.logIndex, leaf);
    leaves.push(Buffer.from(leaf, 'hex'));
    const uuid = treePrefix + leaf;
    return [201, present(leaf), { Location: `/api/v1/log/entries/${uuid}`, ETag: uuid }];
  }

  function search(query) {
    let wanted;
    if (typeof query.hash === 'string') {
      const h = query.hash.toLowerCase();
      wanted = h.includes(':') ? h : `sha256:${h}`;
    } else if (query.publicKey && typeof query.publicKey.content === 'string') {
      wanted = keyId(query.publicKey.content);
      if (!wanted) return [400, { code: 400, message: 'publicKey.content is not a PEM key or certificate' }];
    } else {
      return [400, { code: 400, message: 'one of hash or publicKey is required' }];
    }
    const found = [...byLeaf.entries()].filter(([, v]) => v.indexKeys.includes(wanted)).map(([k]) => treePrefix + k);
    return [200, found];
  }

  async function route(req, body) {
    const u = new URL(req.url, url);
    const path = u.pathname;
    if (req.method === 'POST' && path === '/__test__/fault') {
      fault = JSON.parse(body).mode ?? null;
      return [204, null];
    }
    if (fault === 'status-500' || fault === 'status-400') {
      const code = fault === 'status-500' ? 500 : 400;
      if (code === 400) fault = null;
      return [code, { code, message: 'fault injected by the test' }];
    }
    if (req.method === 'POST' && path === '/api/v1/log/entries') return createEntry(body);
    if (req.method === 'GET' && path === '/api/v1/log/entries') {
      const idx = Number(u.searchParams.get('logIndex'));
      const leaf = byIndex.get(idx);
      if (!u.searchParams.has('logIndex') || !Number.isInteger(idx)) return [400, { code: 400, message: 'logIndex is required' }];
      return leaf ? [200, present(leaf)] : [404, { code: 404, message: `no entry at logIndex ${idx}` }];
    }
    const m = /^\/api\/v1\/log\/entries\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && m) {
      const leaf = entryByUuid(m[1].toLowerCase());
      return leaf ? [200, present(leaf)] : [404, { code: 404, message: `no entry with UUID ${m[1]}` }];
    }
    if (req.method === 'GET' && path === '/api/v1/log') {
      const root = treeHash(leaves);
      return [200, { rootHash: root.toString('hex'), treeSize: leaves.length, signedTreeHead: checkpoint(leaves.length, root), treeID: String(treeID) }];
    }
    if (req.method === 'GET' && path === '/api/v1/log/publicKey') {
      return [200, keys.tlog.publicKey.export({ format: 'pem', type: 'spki' }), {}, 'application/x-pem-file'];
    }
    if (req.method === 'POST' && path === '/api/v1/index/retrieve') return search(JSON.parse(body));
    for (const handler of [fulcio, timestamp]) {
      if (req.method === 'POST' && path === handler.path) {
        const r = await handler.fn(body);
        return [r.statusCode, r.response, {}, r.contentType || 'text/plain'];
      }
    }
    return [404, { code: 404, message: `no route ${req.method} ${path}` }];
  }

  server.on('request', (req, res) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', async () => {
      let status;
      let doc;
      let headers = {};
      let type = 'application/json';
      try {
        [status, doc, headers = {}, type = 'application/json'] = await route(req, Buffer.concat(chunks).toString('utf8'));
      } catch (e) {
        [status, doc] = [400, { code: 400, message: String(e?.message ?? e) }];
      }
      const data = doc === null ? '' : typeof doc === 'string' || ArrayBuffer.isView(doc) ? doc : JSON.stringify(doc);
      res.writeHead(status, { 'Content-Type': type, ...headers });
      res.end(data);
    });
  });

  const start = new Date(Date.now() - 3600 * 1000);
  const spki = (k) => k.publicKey.export({ format: 'der', type: 'spki' });
  const root = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [{
      baseUrl: url,
      hashAlgorithm: HashAlgorithm.SHA2_256,
      publicKey: { rawBytes: spki(keys.tlog), keyDetails: PublicKeyDetails.PKIX_ECDSA_P256_SHA_256, validFor: { start } },
      logId: { keyId: logID },
    }],
    certificateAuthorities: [{
      subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
      uri: url,
      certChain: { certificates: [{ rawBytes: Buffer.from(ca.rootCertificate) }] },
      validFor: { start },
    }],
    ctlogs: [{
      baseUrl: url,
      hashAlgorithm: HashAlgorithm.SHA2_256,
      publicKey: { rawBytes: spki(keys.ctlog), keyDetails: PublicKeyDetails.PKIX_ECDSA_P256_SHA_256, validFor: { start } },
      logId: { keyId: Buffer.from(ctLog.logID) },
    }],
    timestampAuthorities: [{
      subject: { organization: 'sigstore.mock', commonName: 'tsa' },
      uri: url,
      certChain: { certificates: [{ rawBytes: Buffer.from(tsa.intCertificate) }, { rawBytes: Buffer.from(tsa.rootCertificate) }] },
      validFor: { start },
    }],
  };
  mkdirSync(outDir, { recursive: true });
  const trustedRoot = join(outDir, 'trusted_root.json');
  writeFileSync(trustedRoot, JSON.stringify(TrustedRoot.toJSON(root), null, 2) + '\n');
  writeFileSync(join(outDir, 'rekor.pub'), keys.tlog.publicKey.export({ format: 'pem', type: 'spki' }));

  const parent = process.ppid;
  const stop = () => process.exit(0);
  setTimeout(stop, lifetime * 1000).unref();
  setInterval(() => { if (process.ppid !== parent) stop(); }, 1000).unref();
  process.on('SIGTERM', stop);
  process.stdout.write(JSON.stringify({ url, trustedRoot, pid: process.pid }) + '\n');
}

main().catch((e) => {
  process.stderr.write(`sigstore stack failed to start: ${e?.stack ?? e}\n`);
  process.exit(1);
});
