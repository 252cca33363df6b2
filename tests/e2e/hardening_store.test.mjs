// hardening_store.test.mjs: issue 13 on the event log, end to end on both
// backends -- GET /v1/events/verify and 'tokend events verify' (#8), a chain
// an outsider recomputes from GET /v1/events, a rewritten history caught by
// the keyed links and by a checkpoint kept outside, retention (#2), and
// GET /v1/events valid JSON whatever bytes the store holds (#3).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { open, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { allEvents, api, backends, freshDir, request, runCli, serveExpectingExit, startTokend, stopAndScan, storeSql, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

/** JSON with sorted keys, compact (what jansson writes with JSON_SORT_KEYS). */
function canon(v) {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`;
}

/** The hash of an event as GET /v1/events/verify's "canonical" describes it. */
function eventHash(tenantId, ev, prev) {
  const o = {
    id: ev.id, tenant_id: tenantId, seq: ev.seq, at: ev.at_ms, trace_id: ev.trace_id, kind: ev.kind,
    source: ev.source, action: ev.action, outcome: ev.outcome, subject_type: ev.subject_type,
    subject_id: ev.subject_id, message: ev.message, detail: ev.detail === null ? null : canon(ev.detail),
    latency_us: ev.latency_us, node: ev.node,
  };
  return createHash('sha256').update(`${prev}\n${canon(o)}`).digest('hex');
}

const cliEnv = (t) => ({ TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token });

for (const backend of backends()) {
  describe(`event chain hardening (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend });
    });
    after(() => stopAndScan(t));

    it('GET /v1/events/verify: valid, keyed, with a signed checkpoint and the canonical form', async () => {
      for (let i = 0; i < 3; i++) await request(t, '/v1/whoami', { auth: 'Bearer nope' });
      const r = await api(t, '/v1/events/verify');
      assert.equal(r.status, 200, r.text);
      const v = r.json;
      assert.equal(v.valid, true, v.error);
      assert.equal(v.macs_checked, true);
      assert.ok(v.checked >= 2, `${v.checked} checked`);
      assert.equal(v.first_seq, 1);
      assert.equal(v.broken_seq, null);
      assert.ok(v.keyed >= 1, 'events of an unsealed node are keyed');
      assert.equal(v.attested_seq, v.head_seq);
      assert.match(v.head_hash, /^[0-9a-f]{64}$/);
      assert.equal(v.checkpoint.seq, v.head_seq);
      assert.equal(v.checkpoint.hash, v.head_hash);
      assert.match(v.checkpoint.mac, /^[0-9a-f]{64}$/);
      for (const k of ['hash', 'json', 'mac', 'checkpoint']) assert.equal(typeof v.canonical[k], 'string');
      // An outsider recomputes every hash from GET /v1/events alone.
      const evs = (await allEvents(t)).reverse();
      let prev = v.base_hash;
      for (const ev of evs) {
        assert.equal(ev.prev_hash, prev, `prev_hash of seq ${ev.seq}`);
        const h = eventHash(v.tenant_id, ev, prev);
        assert.equal(h, ev.hash, `recomputed hash of seq ${ev.seq}`);
        prev = h;
      }
      assert.equal(prev, v.head_hash);
    });

    it('tokend events verify: exit 0, --json keeps a checkpoint, --checkpoint FILE checks it', async () => {
      const ok = await runCli(['events', 'verify'], { env: cliEnv(t) });
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /the event chain holds/);
      const j = await runCli(['events', 'verify', '--json'], { env: cliEnv(t) });
      assert.equal(j.code, 0, j.stderr);
      const out = JSON.parse(j.stdout);
      assert.equal(out.valid, true);
      const file = path.join(await freshDir('cp'), 'checkpoint.json');
      await writeFile(file, j.stdout);
      await request(t, '/v1/whoami', { auth: 'Bearer later' }); // the chain grows past it
      const cp = await runCli(['events', 'verify', '--checkpoint', file], { env: cliEnv(t) });
      assert.equal(cp.code, 0, cp.stderr);
      assert.match(cp.stdout, /passes through the checkpoint/);
      // A forged checkpoint (another seq, the same MAC) is refused.
      const forged = { ...out.checkpoint, seq: out.checkpoint.seq - 1 };
      await writeFile(file, JSON.stringify(forged));
      const bad = await runCli(['events', 'verify', '--checkpoint', file], { env: cliEnv(t) });
      assert.equal(bad.code, 1, bad.stdout);
      assert.match(bad.stderr, /checkpoint/);
      await writeFile(file, JSON.stringify(out));
    });

    it('a history rewritten with every hash recomputed fails verify at the edited seq', async () => {
      const j = await runCli(['events', 'verify', '--json'], { env: cliEnv(t) });
      const keep = JSON.parse(j.stdout);
      const file = path.join(await freshDir('cp'), 'checkpoint.json');
      await writeFile(file, j.stdout);
      const v0 = keep;
      const evs = (await allEvents(t)).reverse();
      const target = evs.find((e) => e.kind === 'node' && e.action === 'start');
      assert.ok(target, 'a node start event');
      // The attacker edits the message and recomputes every hash after it.
      await storeSql(t, `UPDATE events SET message = 'nothing happened' WHERE seq = ${target.seq} AND tenant_id = '${v0.tenant_id}'`);
      const edited = (await allEvents(t)).reverse();
      let prev = v0.base_hash;
      for (const ev of edited) {
        const h = eventHash(v0.tenant_id, ev, prev);
        if (h !== ev.hash || ev.prev_hash !== prev)
          await storeSql(t, `UPDATE events SET prev_hash = '${prev}', hash = '${h}' WHERE seq = ${ev.seq} AND tenant_id = '${v0.tenant_id}'`);
        prev = h;
      }
      await storeSql(t, `UPDATE tenants SET event_head = '${prev}' WHERE id = '${v0.tenant_id}'`);
      const r = await api(t, '/v1/events/verify');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.valid, false);
      assert.equal(r.json.broken_seq, target.seq);
      assert.match(r.json.error, /MAC/);
      assert.equal(r.json.checkpoint, null);
      const cli = await runCli(['events', 'verify'], { env: cliEnv(t) });
      assert.equal(cli.code, 1);
      assert.match(cli.stderr, new RegExp(`broken at seq ${target.seq}\\b`));
      // The checkpoint kept outside no longer holds either.
      const cp = await runCli(['events', 'verify', '--checkpoint', file], { env: cliEnv(t) });
      assert.equal(cp.code, 1);
      assert.match(cp.stderr, /checkpoint at seq \d+ does not hold/);
    });
  });

  describe(`event retention and hostile bytes (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    after(async () => {
      if (t) await t.stop();
    });

    it('events older than events_retention_days go; the chain verifies from the oldest kept', async () => {
      t = await startTokend({ backend });
      for (let i = 0; i < 6; i++) await request(t, '/v1/whoami', { auth: 'Bearer nope' });
      const before = (await api(t, '/v1/events/verify')).json;
      assert.equal(before.valid, true, before.error);
      assert.equal((await t.stop()).code, 0);
      // The four oldest were written 100 days ago (as far as the store knows).
      const old = Date.now() - 100 * 86400000;
      await storeSql(t, `UPDATE events SET at = ${old} WHERE seq <= 4`);
      t = await startTokend({ backend, dataDir: t.dataDir, store: t.store, args: ['--events-retention-days', '90'] });
      await waitFor(async () => (await allEvents(t)).every((e) => e.seq > 4), { message: 'old events pruned' });
      const v = (await api(t, '/v1/events/verify')).json;
      assert.equal(v.valid, true, v.error);
      assert.equal(v.base_seq, 4);
      assert.equal(v.first_seq, 5);
      const prune = await api(t, '/v1/events?kind=node&action=prune');
      assert.equal(prune.json.events.length, 1);
      assert.equal(prune.json.events[0].detail.deleted, 4);
    });

    it('GET /v1/events stays valid JSON when the store holds invalid UTF-8 and escapes', async () => {
      if (backend !== 'sqlite') return; // PostgreSQL refuses invalid UTF-8 itself
      await storeSql(t, "UPDATE events SET message = CAST(X'FF801B5B324A7FC29B' AS TEXT) WHERE seq = 5");
      const r = await api(t, '/v1/events?limit=1000');
      assert.equal(r.status, 200);
      assert.ok(r.json && Array.isArray(r.json.events), `GET /v1/events parses: ${r.text.slice(0, 200)}`);
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(r.text.replace(/\n$/, ""), /[\u0000-\u001f\u007f\u0080-\u009f]/);
      const ev = r.json.events.find((e) => e.seq === 5);
      assert.equal(ev.message, '\ufffd\ufffd\u001b[2J\u007f\u009b');
      // and the edit shows in the chain
      const v = (await api(t, '/v1/events/verify')).json;
      assert.equal(v.valid, false);
      assert.equal(v.broken_seq, 5);
    });
  });
}

describe('a damaged SQLite store (issue 13 #19)', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('refuses to start with store_corrupt naming the file; store_check=off starts', async () => {
    const t = await startTokend({ backend: 'sqlite' });
    // Enough events for an inner page to hit.
    const filler = 'x'.repeat(300);
    await storeSql(t, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
      INSERT INTO events (id, tenant_id, seq, at, trace_id, kind, source, action, outcome, message, node, prev_hash, hash)
      SELECT 'f' || i, 'filler', i, 0, 't', 'k', 's', 'a', 'o', '${filler}', 'n', '', '' FROM n`);
    assert.equal((await t.stop()).code, 0);
    const file = path.join(t.dataDir, 'tokend.db');
    const size = (await stat(file)).size;
    const page = Math.floor(size / 4096 / 2);
    assert.ok(page > 10, `${size} bytes`);
    const fh = await open(file, 'r+');
    await fh.write(Buffer.alloc(4096, 0xa5), 0, 4096, page * 4096);
    await fh.close();
    const r = await serveExpectingExit({ backend: 'sqlite', dataDir: t.dataDir });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /store_corrupt|is damaged/);
    assert.ok(r.stderr.includes(file), `names ${file}: ${r.stderr}`);
    assert.match(r.stderr, /backup/);
    const off = await startTokend({ backend: 'sqlite', dataDir: t.dataDir, args: ['--store-check', 'off'] });
    assert.equal((await off.stop()).code, 0);
  });
});
