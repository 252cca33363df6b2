// events.test.mjs: the event log over GET /v1/events: node start/stop,
// cursor paging, filters, parameter validation, and after=N.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { allEvents, api, backends, request, startTokend, stopAndScan, uniqueId, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

/** Make n operator/authenticate/denied events; returns their request ids.
 * Each from its own loopback address: repeats from one address in a window
 * are coalesced into one event. */
let nextFrom = 0;
async function failedAuths(t, n) {
  const ids = [];
  for (let i = 0; i < n; i++) {
    const rid = uniqueId('ev');
    const from = `127.0.${2 + Math.floor(nextFrom / 250)}.${1 + (nextFrom++ % 250)}`;
    const r = await request(t, '/v1/events', { auth: 'Bearer nope', headers: { 'x-request-id': rid }, from });
    assert.equal(r.status, 401);
    ids.push(r.json.request_id); // the trace id: tokend's id for the request
  }
  return ids;
}

for (const backend of backends()) {
  describe(`events (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend });
    });
    after(() => stopAndScan(t));

    it('a node/start event exists after startup', async () => {
      const r = await api(t, '/v1/events?kind=node&action=start');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.events.length, 1);
      const ev = r.json.events[0];
      assert.equal(ev.kind, 'node');
      assert.equal(ev.action, 'start');
      assert.equal(ev.outcome, 'ok');
      assert.equal(ev.subject_type, 'node');
      assert.equal(ev.subject_id, ev.node);
      assert.equal(ev.detail.store, backend);
      assert.equal(r.json.next_cursor, null);
      for (const k of ['id', 'seq', 'at', 'trace_id', 'source', 'message', 'hash']) assert.ok(ev[k] !== undefined && ev[k] !== null, k);
      assert.ok(!Number.isNaN(Date.parse(ev.at)), `at is a time: ${ev.at}`);
    });

    it('SIGTERM and a restart on the same data dir and store add a stop, then a start', async () => {
      const first = (await api(t, '/v1/events?kind=node')).json.events;
      const res = await t.stop();
      assert.equal(res.code, 0, t.stderr());
      t = await startTokend({ backend, dataDir: t.dataDir, store: t.store });
      const r = await api(t, '/v1/events?kind=node');
      assert.equal(r.status, 200, r.text);
      const evs = r.json.events;
      assert.equal(evs.length, first.length + 2);
      assert.deepEqual(evs.map((e) => e.action), ['start', 'stop', ...first.map((e) => e.action)]);
      assert.ok(evs[0].seq > evs[1].seq && evs[1].seq > evs[2].seq);
      // The stop belongs to the first process, the new start to this one.
      assert.equal(evs[1].node, first[0].node);
      assert.notEqual(evs[0].node, first[0].node);
      assert.equal(evs[1].outcome, 'ok');
      // The same root token still works: nothing was re-created.
      assert.equal((await api(t, '/v1/whoami')).json.name, 'root');
    });

    it('paging with limit=2 and next_cursor walks every event once, newest first', async () => {
      await failedAuths(t, 7);
      const all = await api(t, '/v1/events?limit=1000');
      assert.equal(all.status, 200);
      assert.equal(all.json.next_cursor, null);
      const seqs = all.json.events.map((e) => e.seq);
      assert.ok(seqs.length >= 10, `${seqs.length} events`);
      // Newest first and gapless down to 1 (seq is per tenant, gapless).
      assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => seqs.length - i));

      const walked = [];
      let cursor = null;
      let pages = 0;
      for (;;) {
        const r = await api(t, `/v1/events?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`);
        assert.equal(r.status, 200, r.text);
        pages++;
        assert.ok(r.json.events.length >= 1 && r.json.events.length <= 2);
        walked.push(...r.json.events);
        if (r.json.next_cursor === null) break;
        assert.equal(r.json.events.length, 2, 'only the last page is short');
        assert.equal(r.json.next_cursor, r.json.events[1].seq, 'the cursor is the last seq of the page');
        cursor = r.json.next_cursor;
        assert.ok(pages < 1000);
      }
      assert.equal(pages, Math.ceil(seqs.length / 2));
      assert.deepEqual(walked.map((e) => e.seq), seqs);
      assert.deepEqual(walked.map((e) => e.id), all.json.events.map((e) => e.id));
      assert.equal(new Set(walked.map((e) => e.id)).size, walked.length);
    });

    it('filters by kind, action and outcome', async () => {
      const all = await allEvents(t);
      const check = async (q, pred) => {
        const got = await allEvents(t, q, { limit: 3 });
        assert.deepEqual(got.map((e) => e.seq), all.filter(pred).map((e) => e.seq), q);
        return got;
      };
      assert.ok((await check('kind=node', (e) => e.kind === 'node')).length >= 3);
      assert.ok((await check('kind=operator&action=authenticate', (e) => e.kind === 'operator' && e.action === 'authenticate')).length >= 7);
      assert.ok((await check('outcome=denied', (e) => e.outcome === 'denied')).length >= 7);
      assert.ok((await check('outcome=ok', (e) => e.outcome === 'ok')).length >= 3);
      assert.equal((await check('kind=node&action=stop', (e) => e.kind === 'node' && e.action === 'stop')).length, 1);
      assert.equal((await check('kind=nothing-like-this', () => false)).length, 0);
      const node = all.find((e) => e.kind === 'node').subject_id;
      await check(`subject=${encodeURIComponent(node)}`, (e) => e.subject_id === node);
      await check('source=api', (e) => e.source === 'api');
    });

    it('filters by since (inclusive) and until (exclusive), as RFC 3339 or epoch ms', async () => {
      await failedAuths(t, 3);
      const all = await allEvents(t);
      const times = [...new Set(all.map((e) => Date.parse(e.at)))].sort((a, b) => a - b);
      assert.ok(times.length >= 3, 'events at three or more distinct milliseconds');
      const mid = times[Math.floor(times.length / 2)];
      const midIso = new Date(mid).toISOString();
      const since = all.filter((e) => Date.parse(e.at) >= mid).map((e) => e.seq);
      const until = all.filter((e) => Date.parse(e.at) < mid).map((e) => e.seq);
      assert.ok(since.length > 0 && until.length > 0);
      assert.equal(since.length + until.length, all.length);
      for (const v of [midIso, String(mid)]) {
        assert.deepEqual((await allEvents(t, `since=${encodeURIComponent(v)}`)).map((e) => e.seq), since, `since=${v}`);
        assert.deepEqual((await allEvents(t, `until=${encodeURIComponent(v)}`)).map((e) => e.seq), until, `until=${v}`);
      }
      // A window: [times[1], times[2]).
      const win = all.filter((e) => Date.parse(e.at) >= times[1] && Date.parse(e.at) < times[2]).map((e) => e.seq);
      const got = await allEvents(t, `since=${new Date(times[1]).toISOString()}&until=${new Date(times[2]).toISOString()}`);
      assert.deepEqual(got.map((e) => e.seq), win);
      // A time zone offset names the same instant.
      const plus2 = new Date(mid + 2 * 3600e3).toISOString().replace('Z', '+02:00');
      assert.deepEqual((await allEvents(t, `since=${encodeURIComponent(plus2)}`)).map((e) => e.seq), since);
      // The future: nothing.
      assert.equal((await allEvents(t, 'since=2999-01-01T00:00:00Z')).length, 0);
    });

    it('rejects bad parameters with 400 naming the field', async () => {
      const cases = [
        ['limit=0', 'limit'],
        ['limit=1001', 'limit'],
        ['limit=abc', 'limit'],
        ['limit=-5', 'limit'],
        ['limit=', 'limit'],
        ['limit=1.5', 'limit'],
        ['since=garbage', 'since'],
        ['since=2026-13-01T00:00:00Z', 'since'],
        ['until=yesterday', 'until'],
        ['cursor=abc', 'cursor'],
        ['cursor=0', 'cursor'],
        ['after=-1', 'after'],
        ['after=1&cursor=5', 'after'],
        ['kind=a%20b', 'kind'],
        [`action=${'x'.repeat(65)}`, 'action'],
        ['outcome=', 'outcome'],
      ];
      for (const [q, field] of cases) {
        const r = await api(t, `/v1/events?${q}`);
        assert.equal(r.status, 400, `${q}: ${r.text}`);
        assert.equal(r.json.error, 'invalid_parameter', q);
        assert.equal(r.json.field, field, q);
        assert.equal(typeof r.json.message, 'string');
      }
      // The limits themselves are accepted.
      assert.equal((await api(t, '/v1/events?limit=1')).status, 200);
      assert.equal((await api(t, '/v1/events?limit=1000')).status, 200);
    });

    it('after=N returns the events newer than N, oldest first', async () => {
      const all = (await allEvents(t)).slice().reverse(); // oldest first
      const n = all[all.length - 5].seq;
      const r = await api(t, `/v1/events?after=${n}`);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json.events.map((e) => e.seq), [n + 1, n + 2, n + 3, n + 4]);
      // With a limit, still the oldest of them first.
      const l = await api(t, `/v1/events?after=${n}&limit=2`);
      assert.deepEqual(l.json.events.map((e) => e.seq), [n + 1, n + 2]);
      // At the head: nothing yet, then what arrives.
      const head = all[all.length - 1].seq;
      assert.deepEqual((await api(t, `/v1/events?after=${head}`)).json.events, []);
      const [rid] = await failedAuths(t, 1);
      const more = (await api(t, `/v1/events?after=${head}`)).json.events;
      assert.equal(more.length, 1);
      assert.equal(more[0].seq, head + 1);
      assert.equal(more[0].trace_id, rid);
      // Combined with a filter.
      const f = await api(t, `/v1/events?after=${n}&kind=node`);
      assert.deepEqual(f.json.events, []);
    });

    it('after=0 returns every event, oldest first', async () => {
      const all = await allEvents(t);
      const r = await api(t, '/v1/events?after=0&limit=1000');
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(
        r.json.events.map((e) => e.seq),
        all.map((e) => e.seq).reverse(),
        'after=0 is "everything newer than nothing", oldest first like any after=N',
      );
    });
  });
}
