// harness.js exposes verify.js to the Go test (verifyjs_test.go) as
// window.harness: each call answers a plain object that survives JSON, a
// value or the failed check and its message, never a thrown error.
import * as v from '/assets/verify.js';

async function outcome(f) {
  try {
    return { ok: true, value: await f() };
  } catch (e) {
    return { ok: false, check: e instanceof v.VerifyError ? e.check : '', message: String(e && e.message || e), name: e && e.name || '' };
  }
}

const cp = (c) => ({ origin: c.origin, size: c.size, root: v.b64encode(c.root) });

window.harness = {
  checkpoint: (keys, text) => outcome(async () => {
    const k = await v.loadKeys(keys);
    return cp(await v.verifyCheckpoint(text, k.log));
  }),
  entry: (keys, checkpoint, item) => outcome(async () => {
    const k = await v.loadKeys(keys);
    const c = await v.verifyCheckpoint(checkpoint, k.log);
    const { entry, statement } = await v.verifyEntry(item, c, k);
    return { index: entry.index, kind: entry.kind, predicateType: statement.predicateType };
  }),
  // consistency verifies both checkpoints, then that newer extends older,
  // as the page does with the one it remembered.
  consistency: (keys, older, newer, hashes) => outcome(async () => {
    const k = await v.loadKeys(keys);
    const a = await v.verifyCheckpoint(older, k.log);
    const b = await v.verifyCheckpoint(newer, k.log);
    await v.verifyConsistency(a, b, hashes);
    return { from: a.size, to: b.size };
  }),
  // all runs verifyAll on a page (with the page's expectations, opts) and
  // answers each result and the time it took in the browser (keys and
  // checkpoint excluded).
  all: (keys, checkpoint, items, opts) => outcome(async () => {
    const k = await v.loadKeys(keys);
    const c = await v.verifyCheckpoint(checkpoint, k.log);
    const start = performance.now();
    const results = await v.verifyAll(items, c, k, opts);
    const ms = performance.now() - start;
    return {
      ms,
      results: results.map((r) => r.ok
        ? { index: r.index, ok: true, kind: r.entry.kind }
        : { index: r.index, ok: false, check: r.error.check || '', message: String(r.error.message) }),
    };
  }),
};
window.harnessReady = true;
