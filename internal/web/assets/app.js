// app.js drives the pages of the web view. What the image and ledger
// pages show is drawn from the leaf bytes verify.js has checked, never
// from anything else the server says: a server (or a proxy) that edits an
// entry gets that entry shown as failing, not a false "verified".
import { loadKeys, verifyCheckpoint, verifyConsistency, verifyAll } from './verify.js';

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c != null) e.append(c);
  }
  return e;
}

const short = (d) => (typeof d === 'string' && d.startsWith('sha256:') ? d.slice(0, 19) : String(d ?? ''));

async function getJSON(url) {
  const r = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  let body;
  try {
    body = await r.json();
  } catch {
    throw new Error(`${url}: answer ${r.status} is not JSON`);
  }
  if (r.status === 401) {
    location.assign('/ui/signin?next=' + encodeURIComponent(location.pathname + location.search));
    throw new Error('session ended: sign in again');
  }
  if (!r.ok) throw new Error(`${url}: ${r.status}: ${body.error ?? ''}`);
  return body;
}

function alarm(msg) {
  const a = $('#alarm');
  a.hidden = false;
  a.append(el('p', { text: '⚠ ' + msg }));
}

// Copy buttons on the board.
document.addEventListener('click', async (ev) => {
  const b = ev.target.closest('button.copy');
  if (!b) return;
  try {
    await navigator.clipboard.writeText(b.dataset.copy);
    b.textContent = 'copied';
  } catch {
    b.textContent = 'copy failed';
  }
  setTimeout(() => { b.textContent = 'copy'; }, 1500);
});

// keysChanged remembers the keys the first time this browser saw them
// and says when the server now sends others, as ssh does with host keys:
// a server that swapped its keys could sign anything.
function keysChanged(keys) {
  const now = JSON.stringify({ log: keys.log, cosign: keys.cosign, trusted: keys.trusted });
  const seen = localStorage.getItem('stagegate.keys');
  if (seen === null) {
    localStorage.setItem('stagegate.keys', now);
    return false;
  }
  return seen !== now;
}

const b64 = (u8) => btoa(String.fromCharCode(...u8));

// checkHistory compares the checkpoint with the newest one this browser
// saw, with a consistency proof: a log that rewrote or dropped entries it
// had already shown is an alarm, and the old checkpoint is kept as the
// evidence.
async function checkHistory(cp) {
  const raw = localStorage.getItem('stagegate.checkpoint');
  const store = () => localStorage.setItem('stagegate.checkpoint', JSON.stringify({ origin: cp.origin, size: cp.size, root: b64(cp.root) }));
  if (raw === null) {
    store();
    return 'first checkpoint this browser has seen';
  }
  const old = JSON.parse(raw);
  const oldRoot = Uint8Array.from(atob(old.root), (c) => c.charCodeAt(0));
  if (old.origin !== cp.origin) {
    store();
    return `a new log (${cp.origin}); the last one seen was ${old.origin}`;
  }
  if (cp.size < old.size) {
    throw new Error(`the ledger now has ${cp.size} entries, but this browser saw ${old.size}: entries were removed`);
  }
  if (cp.size === old.size) {
    if (b64(cp.root) !== old.root) throw new Error(`the ledger at size ${cp.size} has another root than this browser saw: history was rewritten`);
    return `same as last seen (size ${cp.size})`;
  }
  const p = await getJSON(`/ui/api/consistency?from=${old.size}&to=${cp.size}`);
  try {
    await verifyConsistency({ size: old.size, root: oldRoot }, { size: cp.size, root: cp.root }, p.hashes);
  } catch (e) {
    throw new Error(`the ledger at size ${cp.size} does not extend the one this browser saw at size ${old.size}: ${e.message}`);
  }
  store();
  return `extends the checkpoint seen before (size ${old.size}), proven`;
}

// sameHistory proves that the checkpoint cp extends prev, the one this
// page verified earlier entries against.
async function sameHistory(prev, cp) {
  if (cp.size === prev.size && b64(cp.root) === b64(prev.root)) return;
  if (cp.size < prev.size) throw new Error(`the ledger now has ${cp.size} entries, but this page saw ${prev.size}: entries were removed`);
  const p = cp.size === prev.size ? { hashes: [] } : await getJSON(`/ui/api/consistency?from=${prev.size}&to=${cp.size}`);
  try {
    await verifyConsistency(prev, cp, p.hashes);
  } catch (e) {
    throw new Error(`the ledger at size ${cp.size} does not extend the one this page showed at size ${prev.size}: ${e.message}`);
  }
}

const kinds = {
  promotion: '✔ promotion', revocation: '✖ revocation', 'break-glass': '⚠ break-glass',
  request: '◷ request', approval: '☑ approval', rejection: '☒ rejection',
};

function kv(dl, k, v) {
  if (v == null || v === '' || (Array.isArray(v) && v.length === 0)) return;
  dl.append(el('dt', { text: k }), el('dd', {}, typeof v === 'string' ? v : el('code', { text: JSON.stringify(v) })));
}

function renderEntry(res) {
  const li = el('li', { class: 'entry ' + (res.ok ? 'ok' : 'bad'), 'data-index': String(res.index) });
  const status = res.ok
    ? el('span', { class: 'verify ok', text: '✔ verified' })
    : el('span', { class: 'verify bad', role: 'alert', text: `✘ failed verification (${res.error?.check ?? 'error'}): ${res.error?.message ?? res.error}` });
  if (!res.ok || !res.entry) {
    li.append(el('div', { class: 'head' }, el('strong', { text: `#${res.index}` }), ' ', status));
    return li;
  }
  const e = res.entry;
  const pred = res.statement?.predicate ?? {};
  const head = el('div', { class: 'head' },
    el('strong', { text: `#${e.index} ${kinds[e.kind] ?? e.kind}` }), ' ',
    el('span', { text: `in ${e.stage === '*' ? 'every stage' : e.stage}` }), ' ',
    el('time', { datetime: e.time, text: new Date(e.time).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' }), ' ',
    status);
  const dl = el('dl');
  const image = el('a', { href: '/ui/image/' + e.digest }, el('code', { text: `${e.repository}@${short(e.digest)}` }));
  dl.append(el('dt', { text: e.kind === 'break-glass' ? 'workload' : 'image' }), el('dd', {}, e.kind === 'break-glass' ? e.workload : image));
  kv(dl, 'by', `${e.subject}${e.groups?.length ? ' (' + e.groups.join(', ') + ')' : ''}`);
  kv(dl, 'reason', e.reason);
  kv(dl, 'images', e.images);
  kv(dl, 'platforms', e.platforms);
  kv(dl, 'labels', e.labels);
  kv(dl, 'copies', e.copies);
  kv(dl, 'evidence', pred.evidence);
  kv(dl, 'verified evidence', pred.verifiedEvidence && Object.keys(pred.verifiedEvidence));
  if (e.request != null) kv(dl, 'request', `#${e.request}`);
  if (e.approvals?.length) kv(dl, 'approvals', e.approvals.map((a) => `${a.subject} (${a.time})${a.reason ? ': ' + a.reason : ''}`).join('; '));
  if (e.overridesRevocation != null) kv(dl, 'overrides revocation', `#${e.overridesRevocation}`);
  if (e.set?.length) kv(dl, 'promotion set', e.set.map((m) => `${m.repository}@${short(m.digest)} (#${m.ledgerIndex})`).join('; '));
  if (e.foreign) kv(dl, 'imported', 'from another stagegate (signed with its key)');
  li.append(head, dl, el('a', { href: `/ui/receipt/${e.index}`, download: `receipt-${e.index}.json`, class: 'receipt' }, 'Download receipt'));
  return li;
}

async function timeline(list) {
  const started = performance.now();
  const box = $('#checkpoint');
  const more = $('#more');
  const keysJSON = await getJSON('/ui/api/keys');
  const keys = await loadKeys(keysJSON);
  if (keysChanged(keysJSON)) {
    alarm('The signing keys this server sends are not the ones this browser saw before. If nobody rotated them, do not trust this server.');
  }
  const image = list.dataset.image;
  let start = Number(list.dataset.start ?? 0);
  // prev is the checkpoint the page's earlier entries were verified
  // against: a later page's must extend it, proven, or the server could
  // show each page from another history.
  let prev = null;
  let first = true;
  let bad = 0;
  let total = 0;
  const load = async () => {
    const q = image ? `image=${encodeURIComponent(image)}&start=${start}&limit=500` : `start=${start}&limit=100`;
    const ans = await getJSON('/ui/api/entries?' + q);
    let cp;
    try {
      cp = await verifyCheckpoint(ans.checkpoint, keys.log);
    } catch (e) {
      box.className = 'card bad';
      box.textContent = '✘ The checkpoint failed verification: ' + e.message;
      alarm('The ledger checkpoint does not verify with the log key: nothing on this page can be trusted.');
      cp = null;
    }
    if (cp && prev) {
      try {
        await sameHistory(prev, cp);
      } catch (e) {
        alarm(e.message);
        box.className = 'card bad';
        cp = null;
      }
    }
    if (cp) prev = cp;
    if (cp && first) {
      let history;
      box.className = 'card ok';
      try {
        history = await checkHistory(cp);
      } catch (e) {
        alarm(e.message);
        history = '✘ ' + e.message;
        box.className = 'card bad';
      }
      box.replaceChildren(el('strong', { text: `✔ Checkpoint verified: ${cp.origin}, ${cp.size} entries` }),
        el('div', { class: 'meta', text: 'root ' + Array.from(cp.root.slice(0, 8), (x) => x.toString(16).padStart(2, '0')).join('') + '… · ' + history }));
    }
    if (first) list.replaceChildren();
    first = false;
    const items = ans.entries.map((it) => ({
      index: it.index,
      leaf: it.leaf,
      proof: it.proof,
    }));
    // The page checks that the answer is what it asked for (verifyAll's
    // image and start), with the start it computed itself, not the
    // server's next.
    const results = cp
      ? await verifyAll(items, cp, keys, image ? { image, start } : { start })
      : items.map((it) => ({ index: it.index, ok: false, error: 'checkpoint: does not verify' }));
    for (const res of results) {
      if (!res.ok) bad++;
      total++;
      list.append(renderEntry(res));
    }
    if (total === 0) list.append(el('li', { text: 'No entries.' }));
    if (items.length > 0) start = image ? items[items.length - 1].index + 1 : start + items.length;
    if (ans.next != null) {
      more.hidden = false;
    } else {
      more.hidden = true;
      // The ledger page's last page ends at the checkpoint's last entry:
      // a server that stops short hides the newest entries.
      if (!image && cp && start < cp.size) {
        bad++;
        alarm(`The server says the ledger ends before entry ${start}, but its checkpoint has ${cp.size} entries: entries are hidden.`);
      }
    }
    document.body.dataset.verified = bad ? 'failed' : 'ok';
    document.body.dataset.verifyMs = String(Math.round(performance.now() - started));
    document.body.dataset.entries = String(total);
  };
  more.addEventListener('click', () => load().catch(fail));
  await load();
}

function fail(e) {
  alarm(e.message);
  document.body.dataset.verified = 'error';
}

const list = $('#timeline');
if (list) timeline(list).catch(fail);
