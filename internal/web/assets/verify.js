// verify.js checks, in the browser with WebCrypto, what the stagegate server
// sends, so that the web view need not be trusted: the checkpoint's signed
// note (Ed25519, golang.org/x/mod/sumdb/note), each entry's RFC 6962
// inclusion proof up to that checkpoint, the entry's DSSE envelope (ECDSA
// P-256, as cosign signs it) and that its in-toto statement describes the
// entry, and the consistency of two checkpoints. It mirrors
// internal/ledger (ParseCheckpoint, VerifyReceipt, VerifyConsistency) and
// internal/signing (Verifier.Verify, matchEntry); a change there must be
// made here too.
//
// An ES module with no dependencies and no build step.

/** The checks a VerifyError can name. */
export const CHECKS = Object.freeze(['checkpoint', 'leaf', 'inclusion', 'signature', 'statement', 'consistency']);

/** VerifyError says which check failed (.check, one of CHECKS) and how. */
export class VerifyError extends Error {
  constructor(check, message) {
    super(message);
    this.name = 'VerifyError';
    this.check = check;
  }
}

const fail = (check, message) => { throw new VerifyError(check, message); };

// What the server and its signers use; see internal/signing.
const PAYLOAD_TYPE = 'application/vnd.in-toto+json';
const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
const PREDICATE_TYPES = Object.freeze({
  'promotion': 'https://stagegate.dev/promotion/v1',
  'revocation': 'https://stagegate.dev/revocation/v1',
  'break-glass': 'https://stagegate.dev/break-glass/v1',
  'request': 'https://stagegate.dev/promotion-request/v1',
  'approval': 'https://stagegate.dev/approval/v1',
  'rejection': 'https://stagegate.dev/rejection/v1',
});
const HASH_SIZE = 32;
const SIG_PREFIX = '\u2014 '; // em dash and space, as note.Sign writes

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });
const subtle = () => {
  if (!globalThis.crypto || !globalThis.crypto.subtle) {
    throw new Error('verify: WebCrypto is unavailable (the page must be served over https or from localhost)');
  }
  return globalThis.crypto.subtle;
};

// ---- bytes, base64, hex ----

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** b64decode decodes standard, padded base64, or returns null. */
export function b64decode(s) {
  if (typeof s !== 'string' || !B64.test(s)) return null;
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** b64decodeStrict also refuses non-zero padding bits, as Go's Strict(). */
export function b64decodeStrict(s) {
  const b = b64decode(s);
  return b !== null && b64encode(b) === s ? b : null;
}

/** b64encode encodes bytes as standard, padded base64. */
export function b64encode(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** hex encodes bytes in lowercase hex. */
export function hex(bytes) {
  let s = '';
  for (const b of bytes) s += (b < 16 ? '0' : '') + b.toString(16);
  return s;
}

/** shortHex is a hash as the Go side's errors print it: 6 bytes and an ellipsis. */
export function shortHex(bytes) {
  if (!bytes || bytes.length === 0) return '(none)';
  return hex(bytes.subarray(0, 6)) + '\u2026';
}

function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

const quote = (s) => JSON.stringify(s);

// ---- hashing (RFC 6962) ----

async function sha256(bytes) {
  return new Uint8Array(await subtle().digest('SHA-256', bytes));
}

/** hashLeaf is SHA-256(0x00 || leaf). */
export function hashLeaf(leaf) {
  return sha256(concat(Uint8Array.of(0), leaf));
}

/** hashChildren is SHA-256(0x01 || l || r). */
export function hashChildren(l, r) {
  return sha256(concat(Uint8Array.of(1), l, r));
}

// A Nodes remembers interior node hashes by their children, for one page
// of entries: neighbouring entries share most of their paths, so verifying
// 500 of them hashes each shared node once, not once per entry (each
// WebCrypto digest is a round trip through a promise). It holds promises,
// so that two entries verified at once wait for the same digest.
class Nodes {
  constructor() { this.memo = new Map(); }
  children(l, r) {
    const key = b64encode(l) + b64encode(r);
    let p = this.memo.get(key);
    if (!p) {
      p = hashChildren(l, r);
      this.memo.set(key, p);
    }
    return p;
  }
}
const noMemo = { children: hashChildren };

// ---- keys ----

function noteKeyHash(name, key) {
  // note.keyHash: the first four bytes of SHA-256(name "\n" key), big endian.
  return sha256(concat(enc.encode(name + '\n'), key)).then((h) => new DataView(h.buffer).getUint32(0));
}

// note.isValidName: non-empty, no space, no plus, valid UTF-8 printable.
function validNoteName(name) {
  return name.length > 0 && !/[\s+\u0000-\u001f\u007f]/u.test(name);
}

/** parseNoteVerifierKey reads "name+hash8hex+base64(0x01 || ed25519 key)". */
export async function parseNoteVerifierKey(text) {
  const bad = (why) => fail('checkpoint', `log key: ${why}`);
  if (typeof text !== 'string') bad('not a string');
  // As note.NewVerifier: name and hash end at the first two pluses; the
  // base64 key may hold more.
  const t = text.trim();
  const i = t.indexOf('+');
  const j = i < 0 ? -1 : t.indexOf('+', i + 1);
  if (j < 0) bad(`malformed verifier key ${quote(text)}`);
  const [name, hash8, b64] = [t.slice(0, i), t.slice(i + 1, j), t.slice(j + 1)];
  if (!validNoteName(name)) bad(`malformed name ${quote(name)}`);
  if (!/^[0-9a-f]{8}$/.test(hash8)) bad(`malformed key hash ${quote(hash8)}`);
  const raw = b64decode(b64);
  if (!raw || raw.length !== 33 || raw[0] !== 1) bad('not an Ed25519 note key (want base64 of 0x01 and 32 bytes)');
  const hash = parseInt(hash8, 16) >>> 0;
  if ((await noteKeyHash(name, raw)) !== hash) bad(`key hash ${hash8} does not match the key`);
  const key = await subtle().importKey('raw', raw.subarray(1), { name: 'Ed25519' }, false, ['verify']);
  return { name, hash, key };
}

/** importCosignKey imports a PEM SPKI ECDSA P-256 public key (cosign.pub). */
export async function importCosignKey(pem) {
  const m = typeof pem === 'string' && pem.match(/-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----/);
  const der = m && b64decode(m[1].replace(/\s+/g, ''));
  if (!der) fail('signature', 'cosign key: not a PEM public key');
  try {
    return await subtle().importKey('spki', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  } catch (e) {
    fail('signature', `cosign key: not an ECDSA P-256 public key: ${e.message}`);
  }
}

/** loadKeys imports what GET /ui/api/keys returns. */
export async function loadKeys(keysJSON) {
  const k = typeof keysJSON === 'string' ? JSON.parse(keysJSON) : keysJSON;
  return {
    log: await parseNoteVerifierKey(k.log),
    cosign: await importCosignKey(k.cosign),
    trusted: await Promise.all((k.trusted || []).map(importCosignKey)),
  };
}

// ---- checkpoints (C2SP tlog-checkpoint as a signed note) ----

/**
 * verifyCheckpoint checks the signed note with the log key, as note.Open
 * and ledger.ParseCheckpoint do, and returns {origin, size, root}.
 */
export async function verifyCheckpoint(text, logKey) {
  const bad = (why) => fail('checkpoint', `checkpoint: ${why}`);
  if (typeof text !== 'string') bad('not a string');
  // note.Open: no ASCII control characters but newline; the text ends at
  // the last blank line, the signature lines follow.
  if (/[\u0000-\u0009\u000b-\u001f]/.test(text)) bad('malformed note (control character)');
  const split = text.lastIndexOf('\n\n');
  if (split < 0) bad('malformed note (no blank line before the signatures)');
  const body = text.slice(0, split + 1);
  const sigs = text.slice(split + 2);
  if (sigs === '' || !sigs.endsWith('\n')) bad('malformed note (signature block)');
  const bodyBytes = enc.encode(body);
  let verified = 0;
  const lines = sigs.slice(0, -1).split('\n');
  if (lines.length > 100) bad('malformed note (too many signatures)');
  for (const line of lines) {
    if (!line.startsWith(SIG_PREFIX)) bad(`malformed signature line ${quote(line)}`);
    const rest = line.slice(SIG_PREFIX.length);
    const sp = rest.indexOf(' ');
    const name = sp < 0 ? rest : rest.slice(0, sp);
    const sig = sp < 0 ? null : b64decode(rest.slice(sp + 1));
    if (!sig || !validNoteName(name) || sig.length < 5) bad(`malformed signature line ${quote(line)}`);
    const hash = new DataView(sig.buffer).getUint32(0);
    // Another witness's line; or ours again, which note.Open ignores after
    // the first.
    if (name !== logKey.name || hash !== logKey.hash || verified > 0) continue;
    const ok = sig.length === 68 &&
      await subtle().verify({ name: 'Ed25519' }, logKey.key, sig.subarray(4), bodyBytes);
    if (!ok) bad(`invalid signature by ${logKey.name}`);
    verified++;
  }
  if (verified === 0) bad(`no signature by ${logKey.name}+${logKey.hash.toString(16).padStart(8, '0')}`);
  const body3 = body.slice(0, -1).split('\n');
  if (body3.length < 3) bad(`${body3.length} body lines, want 3`);
  if (body3[0] !== logKey.name) bad(`origin ${quote(body3[0])}, want ${quote(logKey.name)}`);
  const size = parseSize(body3[1]);
  if (size === null) bad(`malformed size ${quote(body3[1])}`);
  const root = b64decodeStrict(body3[2]);
  if (!root || root.length !== HASH_SIZE) bad(`malformed root hash ${quote(body3[2])}`);
  return { origin: body3[0], size, root };
}

// parseSize reads a canonical decimal tree size; sizes past 2^53 cannot be
// a Number, and no log here reaches them.
function parseSize(s) {
  if (!/^(0|[1-9][0-9]{0,19})$/.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : null;
}

// ---- Merkle proofs (RFC 9162 2.1.3.2 and 2.1.4.2) ----

function proofHashes(list, check, what) {
  if (!Array.isArray(list)) fail(check, `${what}: not a list of hashes`);
  return list.map((h, i) => {
    const b = b64decode(h);
    if (!b || b.length !== HASH_SIZE) fail(check, `${what}: hash ${i} is not ${HASH_SIZE} bytes of base64`);
    return b;
  });
}

// rootFromInclusion walks the path of leaf index up a tree of size leaves.
async function rootFromInclusion(index, size, leafHash, proof, nodes) {
  if (!(index < size)) fail('inclusion', `inclusion proof: index ${index} is not below tree size ${size}`);
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) fail('inclusion', `inclusion proof: ${proof.length} hashes, too many for entry ${index} in a tree of size ${size}`);
    if (fn % 2 === 1 || fn === sn) {
      r = await nodes.children(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await nodes.children(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) fail('inclusion', `inclusion proof: ${proof.length} hashes, too few for entry ${index} in a tree of size ${size}`);
  return r;
}

/**
 * verifyConsistency checks that newer {size, root} extends older, with the
 * consistency proof hashes (base64 strings, as the API sends them).
 */
export async function verifyConsistency(older, newer, hashes) {
  const bad = (why) => fail('consistency', `consistency: ${why}`);
  if (older.origin !== undefined && newer.origin !== undefined && older.origin !== newer.origin) {
    bad(`origins ${quote(older.origin)} and ${quote(newer.origin)} differ`);
  }
  const proof = proofHashes(hashes, 'consistency', 'consistency proof');
  const m = older.size;
  const n = newer.size;
  if (m > n) bad(`older size ${m} is above newer size ${n} (the log shrank)`);
  if (m === n) {
    if (proof.length !== 0) bad(`${proof.length} hashes for two trees of one size`);
    if (!equal(older.root, newer.root)) {
      bad(`two roots at size ${m}: ${shortHex(older.root)} and ${shortHex(newer.root)} (history was rewritten)`);
    }
    return;
  }
  if (m === 0) {
    if (proof.length !== 0) bad(`${proof.length} hashes from the empty tree`);
    return;
  }
  if (proof.length === 0) bad(`no hashes from size ${m} to ${n}`);
  // RFC 9162 2.1.4.2; a power-of-two older tree is its own first node.
  const path = isPowerOfTwo(m) ? [older.root, ...proof] : proof;
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) bad(`${proof.length} hashes, too many from size ${m} to ${n}`);
    if (fn % 2 === 1 || fn === sn) {
      fr = await hashChildren(c, fr);
      sr = await hashChildren(c, sr);
      while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      sr = await hashChildren(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) bad(`${proof.length} hashes, too few from size ${m} to ${n}`);
  if (!equal(fr, older.root)) {
    bad(`the proof leads to root ${shortHex(fr)} at size ${m}, but the older checkpoint has ${shortHex(older.root)} (history was rewritten)`);
  }
  if (!equal(sr, newer.root)) {
    bad(`the proof leads to root ${shortHex(sr)} at size ${n}, but the newer checkpoint has ${shortHex(newer.root)} (history was rewritten)`);
  }
}

function isPowerOfTwo(n) {
  while (n > 1 && n % 2 === 0) n /= 2;
  return n === 1;
}

// ---- DSSE (ECDSA P-256 over PAE, as cosign signs) ----

function pae(type, body) {
  const t = enc.encode(type);
  return concat(enc.encode(`DSSEv1 ${t.length} `), t, enc.encode(` ${body.length} `), body);
}

// derToP1363 turns an ASN.1 DER ECDSA signature (what Go and cosign write)
// into r || s of 32 bytes each (what WebCrypto takes), or null. It is as
// strict as Go's parser: minimal positive integers, no trailing bytes.
export function derToP1363(der) {
  if (der.length < 8 || der[0] !== 0x30 || der[1] !== der.length - 2 || der[1] > 0x7f) return null;
  const out = new Uint8Array(64);
  let o = 2;
  for (let k = 0; k < 2; k++) {
    if (der[o] !== 0x02) return null;
    const len = der[o + 1];
    const start = o + 2;
    if (len === 0 || len > 33 || start + len > der.length) return null;
    if (der[start] & 0x80) return null; // negative
    if (len > 1 && der[start] === 0 && !(der[start + 1] & 0x80)) return null; // not minimal
    let v = der.subarray(start, start + len);
    if (v[0] === 0) v = v.subarray(1);
    if (v.length > 32) return null;
    out.set(v, k * 32 + 32 - v.length);
    o = start + len;
  }
  return o === der.length ? out : null;
}

// verifyEnvelope checks the DSSE envelope with any of keys and returns the
// payload bytes; the payload type must be in-toto's, as cosign insists.
async function verifyEnvelope(env, keys, index) {
  const bad = (why) => fail('signature', `entry ${index}: ${why}`);
  if (!env || typeof env !== 'object') bad('no envelope');
  if (env.payloadType !== PAYLOAD_TYPE) bad(`payloadType ${quote(env.payloadType)}, want ${quote(PAYLOAD_TYPE)}`);
  const payload = b64decode(env.payload);
  if (!payload) bad('envelope payload is not base64');
  if (!Array.isArray(env.signatures) || env.signatures.length === 0) bad('envelope has no signatures');
  if (keys.length === 0) bad('no key to verify it with');
  const msg = pae(env.payloadType, payload);
  for (const s of env.signatures) {
    const der = s && b64decode(s.sig);
    const sig = der && derToP1363(der);
    if (!sig) continue;
    for (const key of keys) {
      if (await subtle().verify({ name: 'ECDSA', hash: 'SHA-256' }, key, sig, msg)) return payload;
    }
  }
  bad(`no signature of the envelope verifies with ${keys.length === 1 ? 'the key' : `any of ${keys.length} keys`}`);
}

// ---- statements ----

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const optString = (v) => v === undefined || v === null ? '' : typeof v === 'string' ? v : null;

// parseStatement checks the shape of the statement, as Statement.validate.
function parseStatement(payload, index) {
  const bad = (why) => fail('statement', `entry ${index}: statement: ${why}`);
  let st;
  try { st = JSON.parse(dec.decode(payload)); } catch (e) { bad(`not JSON: ${e.message}`); }
  if (!isObject(st)) bad('not a JSON object');
  if (st._type !== STATEMENT_TYPE) bad(`_type ${quote(st._type)}, want ${quote(STATEMENT_TYPE)}`);
  if (!Array.isArray(st.subject) || st.subject.length === 0) bad('no subject');
  st.subject.forEach((s, i) => {
    if (!isObject(s) || typeof s.name !== 'string' || s.name === '') bad(`subject ${i} has no name`);
    if (!isObject(s.digest) || typeof s.digest.sha256 !== 'string') bad(`subject ${i} has no sha256 digest`);
    if (!/^[0-9a-f]{64}$/.test(s.digest.sha256)) bad(`subject ${i}: digest ${quote(s.digest.sha256)}: want 64 lowercase hex`);
  });
  if (typeof st.predicateType !== 'string' || st.predicateType === '') bad('empty predicateType');
  if (!isObject(st.predicate)) bad('predicate is not a JSON object');
  return st;
}

// matchEntry checks that the statement describes the entry, as
// internal/signing matchEntry does.
function matchEntry(st, e) {
  const bad = (why) => fail('statement', `entry ${e.index}: statement does not describe the entry: ${why}`);
  const want = Object.hasOwn(PREDICATE_TYPES, e.kind) ? PREDICATE_TYPES[e.kind] : null;
  if (!want) bad(`unknown entry kind ${quote(e.kind)}`);
  if (st.predicateType !== want) bad(`predicateType ${quote(st.predicateType)}, entry kind ${quote(e.kind)} wants ${quote(want)}`);
  if (st.subject.length !== 1) bad(`${st.subject.length} subjects, want 1`);
  const sub = st.subject[0];
  if (sub.name !== e.repository) bad(`subject name ${quote(sub.name)}, entry repository ${quote(e.repository)}`);
  const digest = 'sha256:' + sub.digest.sha256;
  if (digest !== e.digest) bad(`subject digest ${quote(digest)}, entry digest ${quote(e.digest)}`);
  const p = st.predicate;
  const stage = optString(p.stage);
  if (stage === null) bad('predicate stage is not a string');
  if (stage !== optString(e.stage)) bad(`predicate stage ${quote(stage)}, entry stage ${quote(e.stage)}`);
  if (e.kind === 'break-glass') {
    const w = optString(p.workload);
    if (w === null) bad('predicate workload is not a string');
    if (w !== optString(e.workload)) bad(`predicate workload ${quote(w)}, entry workload ${quote(e.workload ?? '')}`);
  }
  if (e.foreign === true) return; // it carries the index of the ledger that made it
  if (p.ledgerIndex === undefined || p.ledgerIndex === null) bad(`predicate has no ledgerIndex, entry index ${e.index}`);
  if (!Number.isSafeInteger(p.ledgerIndex) || p.ledgerIndex < 0) bad(`predicate ledgerIndex ${quote(p.ledgerIndex)} is not an index`);
  if (p.ledgerIndex !== e.index) bad(`predicate ledgerIndex ${p.ledgerIndex}, entry index ${e.index}`);
}

// ---- entries ----

/**
 * verifyEntry checks one item of GET /ui/api/entries ({index, leaf, proof})
 * against a verified checkpoint and returns {entry, statement}. The
 * inclusion proof comes first: until the leaf is shown to be in the signed
 * tree, none of its fields is read. nodes is verifyAll's cache of interior
 * hashes; a caller of one entry leaves it out.
 */
export async function verifyEntry(item, checkpoint, keys, nodes = noMemo) {
  const index = item && item.index;
  if (!Number.isSafeInteger(index) || index < 0) fail('inclusion', `item index ${quote(index)} is not an index`);
  const leaf = b64decode(item.leaf);
  if (!leaf) fail('leaf', `entry ${index}: leaf is not base64`);
  const proof = proofHashes(item.proof, 'inclusion', `entry ${index}: inclusion proof`);
  const root = await rootFromInclusion(index, checkpoint.size, await hashLeaf(leaf), proof, nodes);
  if (!equal(root, checkpoint.root)) {
    fail('inclusion', `inclusion proof: entry ${index} and its proof lead to root ${shortHex(root)}, which does not match ` +
      `checkpoint root ${shortHex(checkpoint.root)} at size ${checkpoint.size} (the entry was edited, or the proof is not its)`);
  }
  let entry;
  try { entry = JSON.parse(dec.decode(leaf)); } catch (e) { fail('leaf', `entry ${index}: leaf is not JSON: ${e.message}`); }
  if (!isObject(entry)) fail('leaf', `entry ${index}: leaf is not a JSON object`);
  if (entry.index !== index) fail('leaf', `entry ${index}: the leaf's index is ${quote(entry.index)}`);
  let signers = [keys.cosign];
  if (entry.foreign === true) {
    signers = keys.trusted || [];
    if (signers.length === 0) fail('signature', `entry ${index}: foreign entry, and no trusted keys are configured`);
  }
  const payload = await verifyEnvelope(entry.envelope, signers, index);
  const statement = parseStatement(payload, index);
  matchEntry(statement, entry);
  return { entry, statement };
}

/**
 * historyNames are the names an entry is in the history of, as
 * internal/ledger historyNames files it: its repository and digest, its
 * platforms and copies, the request it asks or answers, and the images a
 * break-glass pinned by digest. Ledger.HistoryPage answers ?image=name
 * with exactly the entries whose names hold it.
 */
export function historyNames(e) {
  const names = new Set();
  const add = (s) => { if (typeof s === 'string' && s !== '') names.add(s); };
  add(e.repository);
  add(e.digest);
  for (const p of Array.isArray(e.platforms) ? e.platforms : []) add(p);
  for (const c of Array.isArray(e.copies) ? e.copies : []) add(c);
  if (e.kind === 'request') {
    add('stagegate:requests:' + e.stage);
    add('stagegate:request:' + e.index);
  }
  if (e.request !== undefined && e.request !== null) add('stagegate:request:' + e.request);
  for (const img of Array.isArray(e.images) ? e.images : []) {
    const i = typeof img === 'string' ? img.lastIndexOf('@') : -1;
    if (i >= 0) add(img.slice(i + 1));
  }
  return names;
}

// checkPage holds each verified entry to what the page asked for: a
// signed entry of the log is not yet the answer asked for. A server or a
// proxy could answer a revoked digest's page with another image's clean
// history, or drop, repeat or reorder entries, and every one of them
// would verify. With image, each entry must be in its history, in
// increasing index order from start on; without it (the ledger page),
// the entries are start, start+1, ... with none left out.
function checkPage(results, { image, start } = {}) {
  if (image === undefined && start === undefined) return;
  let next = Number.isSafeInteger(start) ? start : 0;
  results.forEach((r, pos) => {
    const bad = (why) => { results[pos] = { index: r.index, ok: false, error: new VerifyError('leaf', why) }; };
    if (image === undefined) {
      const want = next + pos;
      if (r.ok && r.entry.index !== want) bad(`entry ${r.entry.index} answered where the ledger page wants entry ${want}`);
      return;
    }
    if (!r.ok) return;
    if (!historyNames(r.entry).has(image)) {
      bad(`entry ${r.entry.index} is not in the history of ${quote(image)} (it is of ${quote(r.entry.repository)}@${quote(r.entry.digest)})`);
      return;
    }
    if (r.entry.index < next) {
      bad(`entry ${r.entry.index} is out of order: the history's entries come in increasing order, this one from ${next} on`);
      return;
    }
    next = r.entry.index + 1;
  });
}

/**
 * verifyAll verifies a page of items, a few at a time, and returns one
 * result per item, in order: {index, ok: true, entry, statement} or
 * {index, ok: false, error} (a VerifyError, or the error that stopped it).
 * page says what the page asked for (checkPage): {image, start}, the
 * history of image from index start on, or the ledger from start.
 */
export async function verifyAll(items, checkpoint, keys, { concurrency = 16, image, start } = {}) {
  const nodes = new Nodes();
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      const index = items[i] && items[i].index;
      try {
        const { entry, statement } = await verifyEntry(items[i], checkpoint, keys, nodes);
        results[i] = { index, ok: true, entry, statement };
      } catch (error) {
        results[i] = { index, ok: false, error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  checkPage(results, { image, start });
  return results;
}
