// events_writer.test.mjs: the event writer (group commit) seen from outside.
// A burst of requests that produce events -- refused authentications
// (posted), operator token creations (in the request's own transaction) --
// leaves exact counts and a chain that verifies; kill -9 in the middle of a
// burst leaves a chain that verifies after the restart, with every event
// whose request was acknowledged: the token creations answered 201 and the
// seal answered event_recorded (emitted: the reply waited for its commit).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { allEvents, api, backends, metric, request, scrape, startTokend, stopAndScan, storeSql, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

/** Run fn(i) for i in 0..n-1, at most width at once; returns the results
 * (an Error in place of a rejected call). */
async function pool(n, width, fn) {
  const out = new Array(n);
  let next = 0;
  async function lane() {
    while (next < n) {
      const i = next++;
      try {
        out[i] = await fn(i);
      } catch (e) {
        out[i] = e instanceof Error ? e : new Error(String(e));
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, n) }, lane));
  return out;
}

/** A distinct loopback source address per i: refusals from one address in
 * a window are coalesced, and each address has its own failure budget. */
let addrBase = 0;
function addr(i) {
  const k = addrBase + i;
  return `127.1.${Math.floor(k / 250)}.${1 + (k % 250)}`;
}

async function verify(t) {
  const r = await api(t, '/v1/events/verify');
  assert.equal(r.status, 200, r.text);
  return r.json;
}

for (const backend of backends()) {
  describe(`event writer (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend, args: ['--events-queue', '5000'] });
    });
    after(() => stopAndScan(t));

    it('a burst of refusals and token creations: exact counts, and the chain verifies', async () => {
      const before0 = await verify(t);
      assert.equal(before0.valid, true, JSON.stringify(before0));
      const N = 300;
      const M = 30;
      const refusals = pool(N, 32, async (i) => {
        const r = await request(t, '/v1/whoami', { auth: 'Bearer tko_nope', from: addr(i) });
        assert.equal(r.status, 401, r.text);
        return r.json.request_id;
      });
      const creates = pool(M, 4, async (i) => {
        const r = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: `burst-${i}`, role: 'viewer' } });
        assert.equal(r.status, 201, r.text);
        return r.json.id;
      });
      const [rids, ids] = await Promise.all([refusals, creates]);
      addrBase += N;
      for (const x of [...rids, ...ids]) assert.ok(!(x instanceof Error), String(x && x.stack));
      // GET /v1/events waits for what this node queued before it
      const denied = await allEvents(t, 'kind=operator&action=authenticate&outcome=denied');
      const mine = new Set(rids);
      assert.equal(denied.filter((e) => mine.has(e.trace_id)).length, N);
      const created = await allEvents(t, 'kind=operator&action=token_create');
      const idset = new Set(ids);
      assert.equal(created.filter((e) => idset.has(e.subject_id)).length, M);
      const v = await verify(t);
      assert.equal(v.valid, true, JSON.stringify(v));
      const all = await allEvents(t);
      assert.equal(v.checked, all.length);
      assert.ok(v.checked >= before0.checked + N + M, `${v.checked} events checked`);
      // seq is gapless and follows the order of the times
      const asc = all.slice().reverse();
      for (let i = 1; i < asc.length; i++) assert.equal(asc[i].seq, asc[i - 1].seq + 1);
      // no operator token in clear anywhere in the events
      const dump = JSON.stringify(all);
      assert.ok(!dump.includes(t.token), 'the root token is not in the events');
      assert.ok(!/tko_[A-Za-z0-9]{20,}/.test(dump), 'no operator token in the events');
      // the writer's counters on /metrics: every refusal posted and written
      // in fewer commits than events, nothing dropped, the queue empty
      const m = await scrape(t);
      assert.ok(metric(m, 'tokend_events_accepted_total', { call: 'post' }) >= N, 'posts counted');
      const written = metric(m, 'tokend_events_written_total');
      assert.ok(written >= N, `${written} events written`);
      const batches = metric(m, 'tokend_events_batches_total');
      assert.ok(batches >= 1 && batches <= written, `${batches} batches for ${written} events`);
      assert.ok(metric(m, 'tokend_events_batch_max') >= 1);
      assert.equal(metric(m, 'tokend_events_queue_max'), 5000);
      assert.equal(metric(m, 'tokend_events_dropped_total', { reason: 'queue_full' }), 0);
      assert.equal(metric(m, 'tokend_events_failed_total'), 0);
      await waitFor(async () => metric(await scrape(t), 'tokend_events_queued') === 0, { message: 'tokend_events_queued back to 0' });
    });

    it('kill -9 during a burst: after the restart the chain verifies and every acknowledged event is there', async () => {
      const N = 400;
      let stopBurst = false;
      const acked = [];
      const refusals = pool(N, 24, async (i) => {
        if (stopBurst) return null;
        const r = await request(t, '/v1/whoami', { auth: 'Bearer tko_nope', from: addr(i), timeoutMs: 5000 });
        return r.status;
      });
      const creates = pool(200, 4, async (i) => {
        if (stopBurst) return null;
        const r = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: `kill-${i}`, role: 'viewer' }, timeoutMs: 5000 });
        if (r.status === 201) acked.push(r.json.id);
        return r.status;
      });
      addrBase += N;
      await waitFor(() => acked.length >= 20, { timeoutMs: 60000, message: '20 token creations acknowledged' });
      // an emitted event: the reply says it was recorded, so it is committed
      const sealAt = Date.now();
      const seal = await api(t, '/v1/sys/seal', { method: 'POST' });
      assert.equal(seal.status, 200, seal.text);
      assert.equal(seal.json.event_recorded, true, seal.text);
      const ackedBeforeKill = acked.slice();
      const res = await t.stop('SIGKILL');
      assert.equal(res.signal, 'SIGKILL');
      stopBurst = true;
      await Promise.all([refusals, creates]);

      t = await startTokend({ backend, dataDir: t.dataDir, store: t.store, args: ['--events-queue', '5000'] });
      const v = await verify(t);
      assert.equal(v.valid, true, JSON.stringify(v));
      const created = await allEvents(t, 'kind=operator&action=token_create');
      const have = new Set(created.map((e) => e.subject_id));
      for (const id of ackedBeforeKill) assert.ok(have.has(id), `the token_create event of ${id} (answered 201) is there`);
      // the only seal of this store, made by the root token
      const seals = await allEvents(t, 'kind=keyring&action=seal');
      assert.equal(seals.length, 1, JSON.stringify(seals));
      assert.ok(Date.parse(seals[0].at) >= sealAt - 1000, `${seals[0].at} is the seal of this test`);
      // the store agrees with the API: as many events as the chain checked
      const rows = await storeSql(t, `SELECT count(*) AS n FROM events WHERE tenant_id = '${v.tenant_id}'`);
      assert.match(String(rows), new RegExp(`\\b${v.checked}\\b`));
    });

    it('SIGTERM drains the queue: the refusals answered before the stop are all recorded', async () => {
      const N = 200;
      const rids = await pool(N, 32, async (i) => {
        const r = await request(t, '/v1/whoami', { auth: 'Bearer tko_nope', from: addr(i) });
        assert.equal(r.status, 401);
        return r.json.request_id;
      });
      addrBase += N;
      const res = await t.stop('SIGTERM');
      assert.equal(res.code, 0, t.stderr().slice(-2000));
      t = await startTokend({ backend, dataDir: t.dataDir, store: t.store });
      const denied = await allEvents(t, 'kind=operator&action=authenticate&outcome=denied');
      const mine = new Set(rids);
      assert.equal(denied.filter((e) => mine.has(e.trace_id)).length, N);
      const v = await verify(t);
      assert.equal(v.valid, true, JSON.stringify(v));
      const stops = await allEvents(t, 'kind=node&action=stop');
      assert.ok(stops.length >= 1);
    });
  });
}
