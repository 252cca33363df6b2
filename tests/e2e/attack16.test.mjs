// attack16.test.mjs: regressions found by attacking the merged surfaces of
// issue 16 (streams, parked requests, the event writer, the auth cache,
// TLS, provider apps), limits combined.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { allEvents, api, backends, createTenant, metric, request, scrape, startTokend, stopAndScan, waitFor, withTimeout, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

/** Failed authentications, each from its own loopback address (repeats
 * from one address are coalesced): n operator/authenticate/denied events
 * in the default tenant. */
let nextFrom = 0;
async function failedAuths(t, n, concurrency = 8) {
  let i = 0;
  async function one() {
    while (i < n) {
      i++;
      const k = nextFrom++;
      const from = `127.${1 + Math.floor(k / 62500)}.${Math.floor(k / 250) % 250}.${1 + (k % 250)}`;
      const r = await request(t, '/v1/events', { auth: 'Bearer nope', from });
      assert.equal(r.status, 401, r.text);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, one));
}

/** Open GET /v1/events/stream; resolves once the status line is in.
 * s.events: [{id, data, at}] as they arrive (at: Date.now() on arrival). */
function openStream(t, query = '', { token = t.token, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: t.port,
        path: `/v1/events/stream${query}`,
        headers: { authorization: `Bearer ${token}`, ...headers },
        agent: false,
      },
      (res) => {
        const s = { status: res.statusCode, events: [], ends: [], text: '' };
        let buf = '';
        let lastId = '';
        res.setEncoding('utf8');
        s.closed = new Promise((r) => res.once('close', r));
        res.on('error', () => {});
        res.on('data', (d) => {
          s.text += d;
          buf += d;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let event = 'message';
            const data = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('id: ')) lastId = line.slice(4);
              else if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data.push(line.slice(6));
            }
            if (!data.length) continue;
            const v = JSON.parse(data.join('\n'));
            if (event === 'end') s.ends.push(v);
            else s.events.push({ id: lastId, data: v, at: Date.now() });
          }
        });
        s.close = () => req.destroy();
        resolve(s);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

for (const backend of backends()) {
  describe(`attack16: event streams (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend });
    });
    after(() => stopAndScan(t));

    it('a stream catching up from Last-Event-ID: 0 does not hold back the live streams of its tenant', async () => {
      // The pump read one page (500 events) per tenant and round from the
      // lowest seq of the tenant's streams: a reconnect with Last-Event-ID: 0
      // froze every live stream of the tenant until it had caught up.
      await failedAuths(t, 3000);
      const live = await openStream(t);
      assert.equal(live.status, 200);
      await waitFor(() => live.text.includes('retry: 2000'), { message: 'the live stream preamble' });
      // behind by 3000+ events; its filter matches only the marker, so it
      // writes nothing while it catches up and is never paced by its buffer
      const behind = await openStream(t, '?outcome=ok&kind=tenant', { headers: { 'last-event-id': '0' } });
      assert.equal(behind.status, 200);
      // a full copy from 0, to check that the catch-up skips nothing
      const copy = await openStream(t, '', { headers: { 'last-event-id': '0' } });
      assert.equal(copy.status, 200);
      await waitFor(() => behind.text.includes('retry: 2000') && copy.text.includes('retry: 2000'), { message: 'the catching-up streams open' });
      const tenant = await createTenant(t);
      await waitFor(() => live.events.some((e) => e.data.subject_id === tenant.id), { timeoutMs: 20000, message: 'the marker on the live stream' });
      const liveAt = live.events.find((e) => e.data.subject_id === tenant.id).at;
      await waitFor(() => behind.events.some((e) => e.data.subject_id === tenant.id), { timeoutMs: 60000, message: 'the marker on the stream that caught up' });
      const behindAt = behind.events.find((e) => e.data.subject_id === tenant.id).at;
      // 3000 events at 500 a round (200 ms) is at least 5 rounds more
      assert.ok(behindAt - liveAt >= 400, `the live stream got the marker ${behindAt - liveAt} ms before the one catching up`);
      // every event, in order, none skipped, on the copy from 0
      await waitFor(() => copy.events.some((e) => e.data.subject_id === tenant.id), { timeoutMs: 60000, message: 'the marker on the full copy' });
      const upto = Number(copy.events.find((e) => e.data.subject_id === tenant.id).id);
      const listed = (await allEvents(t)).map((e) => e.seq).filter((s) => s <= upto).sort((a, b) => a - b);
      const streamed = copy.events.map((e) => Number(e.id)).filter((s) => s <= upto);
      assert.deepEqual(streamed, listed);
      for (const s of [live, behind, copy]) s.close();
    });

    it('hostile Last-Event-ID values are refused naming the header; the largest seq is served and holds nobody back', async () => {
      for (const v of ['-1', 'abc', '9223372036854775808', '18446744073709551616', '1'.repeat(4000), '0x10', '1e3', '+1', '1 2', '']) {
        const s = await openStream(t, '', { headers: { 'last-event-id': v } });
        await s.closed;
        assert.equal(s.status, 400, `Last-Event-ID ${JSON.stringify(v.slice(0, 40))}: ${s.text.slice(0, 200)}`);
        assert.equal(JSON.parse(s.text).field, 'Last-Event-ID');
      }
      const far = await openStream(t, '', { headers: { 'last-event-id': '9223372036854775807' } });
      assert.equal(far.status, 200);
      const live = await openStream(t);
      await waitFor(() => far.text.includes('retry: 2000') && live.text.includes('retry: 2000'), { message: 'both streams open' });
      const tenant = await createTenant(t);
      await waitFor(() => live.events.some((e) => e.data.subject_id === tenant.id), { timeoutMs: 20000, message: 'the marker on the live stream' });
      assert.equal(far.events.length, 0);
      far.close();
      live.close();
    });
  });
}

for (const backend of backends()) {
  describe(`attack16: one tenant cannot take every stream (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend, args: ['--max-streams', '8', '--max-streams-per-tenant', '3', '--idle-timeout', '4'] });
    });
    after(() => stopAndScan(t));

    it('past max_streams_per_tenant a tenant gets 503 too_many_streams naming the setting; other tenants and /health are served; a closed stream frees its place', async () => {
      const a = await createTenant(t);
      const b = await createTenant(t);
      const mine = [];
      for (let i = 0; i < 3; i++) {
        const s = await openStream(t, '', { token: a.token });
        assert.equal(s.status, 200);
        mine.push(s);
      }
      const over = await openStream(t, '', { token: a.token });
      await over.closed;
      assert.equal(over.status, 503, over.text);
      const body = JSON.parse(over.text);
      assert.equal(body.error, 'too_many_streams');
      assert.match(body.message, /max_streams_per_tenant/);
      assert.match(body.message, /\b3\b/);
      // another tenant, and the node itself, still get theirs
      const theirs = await openStream(t, '', { token: b.token });
      assert.equal(theirs.status, 200);
      const root = await openStream(t);
      assert.equal(root.status, 200);
      const h = await request(t, '/health');
      assert.equal(h.status, 200);
      // the operator sees it in /metrics
      const m = await scrape(t);
      assert.equal(metric(m, 'tokend_http_streams'), 5);
      assert.ok(metric(m, 'tokend_http_streams_total', { result: 'refused' }) >= 1);
      // a stream closed by its client is uncounted once the pump drops it (the
      // server sees the client gone at the next heartbeat, idle_timeout/2)
      mine[0].close();
      let again;
      await waitFor(async () => {
        const s = await openStream(t, '', { token: a.token });
        if (s.status === 200) {
          again = s;
          return true;
        }
        await s.closed;
        return false;
      }, { timeoutMs: 20000, intervalMs: 200, message: 'a place for tenant a again' });
      for (const s of [...mine, theirs, root, again]) s.close();
      // refused streams were never counted: once its streams are gone, the
      // tenant has its three places again
      const held = [];
      await waitFor(async () => {
        const s = await openStream(t, '', { token: a.token });
        if (s.status === 200) held.push(s);
        else await s.closed;
        return held.length === 3;
      }, { timeoutMs: 30000, intervalMs: 200, message: 'three places for tenant a once its streams closed' });
      for (const s of held) s.close();
    });
  });
}

for (const backend of backends()) {
  describe(`attack16: provider apps with hostile fields (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend });
    });
    after(() => stopAndScan(t));

    const create = (json) => request(t, '/v1/provider-apps', { method: 'POST', token: t.token, json });

    it('refuses IPv4 addresses in disguise (2130706433, 0x7f000001, 127.1, 0177.0.0.1) as URL hosts and as a host-name param', async () => {
      // libcurl and inet_aton read each of these as 127.0.0.1; they were
      // accepted as DNS names, over https, for any tenant's token_url.
      let i = 0;
      for (const host of ['2130706433', '0x7f000001', '127.1', '0177.0.0.1', '01.2.3.4', 'a.0x10']) {
        const r = await create({ provider: 'generic-oauth2', name: `disguised-${i++}`, client_id: 'x', token_url: `https://${host}/token` });
        assert.equal(r.status, 400, `${host}: ${r.text}`);
        assert.equal(r.json.field, 'token_url', r.text);
        assert.match(r.json.message, /neither a DNS name nor an IPv4 address/);
      }
      for (const domain of ['127.0.0.1', '2130706433', '0x7f000001']) {
        const r = await create({ provider: 'bitrix24', name: `portal-${i++}`, client_id: 'x', params: { domain } });
        assert.equal(r.status, 400, `${domain}: ${r.text}`);
        assert.equal(r.json.field, 'params.domain', r.text);
      }
      // the plain forms still work: a DNS name, a dotted IPv4 address
      const ok = await create({ provider: 'generic-oauth2', name: 'plain', client_id: 'x', token_url: 'https://10.1.2.3/token' });
      assert.equal(ok.status, 201, ok.text);
      const named = await create({ provider: 'bitrix24', name: 'portal', client_id: 'x', params: { domain: 'acme.bitrix24.com' } });
      assert.equal(named.status, 201, named.text);
      const list = await request(t, '/v1/provider-apps', { token: t.token });
      assert.equal(list.json.provider_apps.length, 2);
    });
  });
}

/** Hold the events table's write lock from another process until
 * release(): sqlite3 BEGIN EXCLUSIVE, or a PostgreSQL session locking
 * events. Resolves once the lock is held. */
async function lockEvents(t) {
  const [cmd, args, begin] =
    t.backend === 'postgres'
      ? ['psql', [t.store, '-X', '-q', '-At'], "BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n"]
      : ['sqlite3', [path.join(t.dataDir, 'tokend.db')], "BEGIN EXCLUSIVE; SELECT 'locked';\n"];
  const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  const exited = new Promise((resolve) => p.once('exit', resolve));
  p.stdin.write(begin);
  await waitFor(() => out.includes('locked'), { timeoutMs: 15000, message: `${cmd} to hold the lock` });
  return {
    async release() {
      if (p.exitCode === null) p.stdin.end('COMMIT;\n');
      await withTimeout(exited, 15000, `${cmd} to exit`);
    },
    kill() {
      if (p.exitCode === null) p.kill('SIGKILL');
    },
  };
}

for (const backend of backends()) {
  describe(`attack16: a refusal storm against a stalled event writer (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    after(() => stopAndScan(t));

    it('refusals keep answering 401, the log says so once a second (not once a refusal), /metrics counts the drops; after kill -9 the chain verifies', async (tc) => {
      t = await startTokend({ backend, args: ['--events-queue', '8', '--events-timeout', '2'] });
      const lock = await lockEvents(t);
      tc.after(() => lock.kill());
      const t0 = Date.now();
      await failedAuths(t, 300, 16);
      const took = Date.now() - t0;
      const h = await request(t, '/health');
      assert.equal(h.status, 200);
      const m = await scrape(t);
      const dropped = metric(m, 'tokend_events_dropped_total', { reason: 'queue_full' });
      assert.ok(dropped >= 250, `dropped ${dropped}`);
      assert.ok(metric(m, 'tokend_events_queued') <= 8);
      // one warning a second at most (it was one per refused request)
      const lines = t.stderr().split('\n').filter((l) => l.includes('could not record an authentication failure'));
      assert.ok(lines.length >= 1, 'the first drop is logged');
      assert.ok(lines.length <= Math.ceil(took / 1000) + 2, `${lines.length} warnings in ${took} ms`);
      assert.match(lines[0], /events_queue|event queue is full/);
      // kill -9 with the queue full and the writer stuck, then the store back
      const res = await t.stop('SIGKILL');
      assert.equal(res.signal, 'SIGKILL');
      await lock.release();
      t = await startTokend({ backend, dataDir: t.dataDir, store: t.store });
      const v = await api(t, '/v1/events/verify');
      assert.equal(v.status, 200, v.text);
      assert.equal(v.json.valid, true, v.text);
      // what was lost: the queued posts (at most the queue and one batch)
      const denied = (await allEvents(t, 'kind=operator&action=authenticate&outcome=denied')).filter((e) => /^127\.[1-9]/.test(e.detail?.remote || ''));
      assert.ok(denied.length <= 16, `${denied.length} refusals recorded of 300`);
    });
  });
}
