// stream.test.mjs: GET /v1/events/stream (server-sent events) and
// `tokend events -f`: new events as they come with id: lines, heartbeats,
// the filters and tenant of GET /v1/events, resuming with Last-Event-ID
// (exactly the missed events), parameter errors, max_streams, a reader that
// stops reading is cut, and the stream's end (event: end) when its token is
// revoked, when the node seals and when it stops.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import { api, backends, createTenant, metric, request, scrape, spawnCli, startTokend, stopAndScan, waitFor, withTimeout, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

/** Failed authentications, each from its own loopback address (repeats
 * from one address are coalesced): n operator/authenticate/denied events.
 * Returns their trace ids. */
let nextFrom = 0;
async function failedAuths(t, n, concurrency = 8) {
  const ids = [];
  let i = 0;
  async function one() {
    while (i < n) {
      i++;
      const k = nextFrom++;
      const from = `127.0.${2 + Math.floor(k / 250)}.${1 + (k % 250)}`;
      const r = await request(t, '/v1/events', { auth: 'Bearer nope', from });
      assert.equal(r.status, 401);
      ids.push(r.json.request_id);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, one));
  return ids;
}

/** Open GET /v1/events/stream; resolves once the status line is in.
 * s.events: [{id, event, data}] as they arrive (data parsed as JSON),
 * s.comments: comment lines seen, s.ends: the data of event: end. */
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
        const s = { status: res.statusCode, headers: res.headers, events: [], comments: [], ends: [], text: '', ended: false };
        let buf = '';
        let lastId = '';
        res.setEncoding('utf8');
        s.closed = new Promise((r) => res.once('close', () => r((s.ended = true))));
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
              if (line.startsWith(':')) s.comments.push(line);
              else if (line.startsWith('id: ')) lastId = line.slice(4);
              else if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data.push(line.slice(6));
            }
            if (!data.length) continue;
            const v = JSON.parse(data.join('\n'));
            if (event === 'end') s.ends.push(v);
            else s.events.push({ id: lastId, event, data: v });
          }
        });
        s.json = () => JSON.parse(s.text);
        s.close = () => req.destroy();
        resolve(s);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The body of a refused stream (a JSON error). */
async function refused(s) {
  await s.closed;
  return s.json();
}

for (const backend of backends()) {
  describe(`event streams (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      // idle_timeout 3: heartbeats every 1.5 s
      t = await startTokend({ backend, args: ['--idle-timeout', '3', '--shutdown-timeout', '10'] });
    });
    after(() => stopAndScan(t));

    it('streams new events with id: lines (the seq) and heartbeats', async () => {
      const s = await openStream(t);
      assert.equal(s.status, 200);
      assert.match(s.headers['content-type'], /^text\/event-stream/);
      assert.equal(s.headers['cache-control'], 'no-store');
      await waitFor(() => s.text.includes('retry: 2000'), { message: 'the stream preamble' });
      assert.equal(s.events.length, 0, 'from now: no old events');
      const ids = await failedAuths(t, 3);
      await waitFor(() => s.events.length >= 3, { message: 'three events on the stream' });
      assert.deepEqual(s.events.map((e) => e.data.trace_id).sort(), [...ids].sort());
      for (const e of s.events) {
        assert.equal(e.id, String(e.data.seq));
        assert.equal(e.data.kind, 'operator');
        assert.equal(e.data.outcome, 'denied');
      }
      await waitFor(() => s.comments.includes(': heartbeat'), { timeoutMs: 10000, message: 'a heartbeat' });
      // the stream outlives idle_timeout (3 s) with heartbeats
      await new Promise((r) => setTimeout(r, 3500));
      assert.equal(s.ended, false, 'still open after idle_timeout');
      s.close();
    });

    it('the filters and the tenant of GET /v1/events', async () => {
      const denied = await openStream(t, '?outcome=denied&action=authenticate');
      const tenantKind = await openStream(t, '?kind=tenant');
      const other = await createTenant(t);
      const theirs = await openStream(t, '?after=0', { token: other.token });
      assert.equal(theirs.status, 200);
      const ids = await failedAuths(t, 2);
      await waitFor(() => denied.events.length >= 2, { message: 'the denied events' });
      await new Promise((r) => setTimeout(r, 600)); // a few pump rounds
      assert.ok(denied.events.every((e) => e.data.outcome === 'denied' && e.data.action === 'authenticate'));
      assert.deepEqual(denied.events.map((e) => e.data.trace_id).sort(), [...ids].sort());
      assert.ok(tenantKind.events.every((e) => e.data.kind === 'tenant'), 'only kind=tenant');
      // the other tenant's stream shows its own events only, never ours
      const list = await request(t, '/v1/events?limit=1000', { token: other.token });
      await waitFor(() => theirs.events.length >= list.json.events.length, { message: "the other tenant's events" });
      const mine = new Set(ids);
      assert.ok(theirs.events.every((e) => !mine.has(e.data.trace_id)), "no event of another tenant");
      assert.deepEqual(theirs.events.map((e) => e.data.id).sort(), list.json.events.map((e) => e.id).sort());
      for (const s of [denied, tenantKind, theirs]) s.close();
    });

    it('resumes with Last-Event-ID (or after): exactly the missed events, once', async () => {
      const s = await openStream(t);
      await failedAuths(t, 2);
      await waitFor(() => s.events.length >= 2);
      const seen = Number(s.events.at(-1).id);
      s.close();
      await s.closed;
      const missed = await failedAuths(t, 4);
      const want = (await api(t, `/v1/events?after=${seen}&limit=1000`)).json.events.map((e) => e.seq);
      assert.ok(want.length >= 4);
      const r = await openStream(t, '', { headers: { 'last-event-id': String(seen) } });
      await waitFor(() => r.events.length >= want.length, { message: 'the missed events' });
      await new Promise((res) => setTimeout(res, 600));
      assert.deepEqual(r.events.map((e) => e.data.seq), want, 'in order, none twice, none missing');
      assert.ok(missed.every((id) => r.events.some((e) => e.data.trace_id === id)));
      r.close();
      const q = await openStream(t, `?after=${seen}`);
      await waitFor(() => q.events.length >= want.length);
      assert.deepEqual(q.events.slice(0, want.length).map((e) => e.data.seq), want);
      q.close();
    });

    it('refuses bad parameters, another principal than an operator token, and no token', async () => {
      let s = await openStream(t, '', { headers: { 'last-event-id': 'abc' } });
      assert.equal(s.status, 400);
      let b = await refused(s);
      assert.equal(b.error, 'invalid_parameter');
      assert.equal(b.field, 'Last-Event-ID');
      s = await openStream(t, '?kind=a&kind=b');
      assert.equal(s.status, 400);
      assert.equal((await refused(s)).error, 'duplicate_parameter');
      s = await openStream(t, '?since=yesterday');
      assert.equal(s.status, 400);
      assert.equal((await refused(s)).field, 'since');
      s = await openStream(t, '', { token: 'tko_nope' });
      assert.equal(s.status, 401);
      await refused(s);
    });

    it('ends with event: end (revoked) when its token is revoked', async () => {
      const c = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'watcher', role: 'viewer' } });
      assert.equal(c.status, 201, c.text);
      const s = await openStream(t, '', { token: c.json.token });
      assert.equal(s.status, 200);
      const cli = await spawnCli(['events', '-f', '--json'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: c.json.token } });
      await waitFor(() => cli.stdout().includes('"seq"'), { message: 'the CLI following' });
      await new Promise((r) => setTimeout(r, 300)); // its stream is open
      const d = await api(t, `/v1/operator-tokens/${c.json.id}`, { method: 'DELETE' });
      assert.equal(d.status, 200, d.text);
      await waitFor(() => s.ended, { timeoutMs: 10000, message: 'the stream to end' });
      assert.deepEqual(s.ends, [{ reason: 'revoked' }]);
      // the CLI stops, exit 1, saying why
      const res = await withTimeout(cli.exited, 15000, 'tokend events -f to exit');
      assert.equal(res.code, 1, cli.stderr());
      assert.match(cli.stderr(), /revoked/);
      assert.ok(!cli.stderr().includes(c.json.token) && !t.stderr().includes(c.json.token), 'the token is in no output');
    });

    it('`tokend events -f` prints new events from the stream', async () => {
      const env = { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token };
      const cli = await spawnCli(['events', '-f', '--json', '--limit', '5'], { env });
      await waitFor(() => cli.stdout().split('\n').filter(Boolean).length >= 1, { message: 'the first page' });
      const ids = await failedAuths(t, 3);
      await waitFor(() => ids.every((id) => cli.stdout().includes(id)), { timeoutMs: 15000, message: 'the new events' });
      const lines = cli.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l));
      const seqs = lines.map((e) => e.seq);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'oldest first');
      assert.equal(new Set(seqs).size, seqs.length, 'none twice');
      const res = await cli.stop('SIGINT');
      assert.equal(res.code, 0, cli.stderr());
    });

    it('ends with event: end (sealed) when the node seals', async () => {
      const s = await openStream(t);
      const r = await api(t, '/v1/sys/seal', { method: 'POST' });
      assert.equal(r.status, 200, r.text);
      await waitFor(() => s.ended, { timeoutMs: 10000, message: 'the stream to end' });
      assert.deepEqual(s.ends, [{ reason: 'sealed' }]);
    });

    it('ends with event: end (node_stopping) at SIGTERM, without holding the stop; `events -f` resumes after a restart', async () => {
      // sealed now: start a fresh node on the same data dir, store and port
      await t.stop();
      const opts = { backend, dataDir: t.dataDir, store: t.store, listen: `127.0.0.1:${t.port}`, args: ['--idle-timeout', '3', '--shutdown-timeout', '10'] };
      t = await startTokend(opts);
      const s = await openStream(t);
      assert.equal(s.status, 200);
      const cli = await spawnCli(['events', '-f', '--json', '--limit', '1'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token } });
      await waitFor(() => cli.stdout().includes('"action":"start"'), { message: 'the first page' });
      const t0 = Date.now();
      const res = await t.stop();
      assert.equal(res.code, 0, t.stderr());
      assert.ok(Date.now() - t0 < 5000, `stopped in ${Date.now() - t0} ms (shutdown_timeout is 10 s)`);
      await s.closed;
      assert.deepEqual(s.ends, [{ reason: 'node_stopping' }]);
      await waitFor(() => cli.stderr().includes('reconnecting'), { message: 'the CLI to notice' });
      t = await startTokend(opts);
      const ids = await failedAuths(t, 2);
      await waitFor(() => ids.every((id) => cli.stdout().includes(id)), { timeoutMs: 20000, message: 'events after the restart' });
      const evs = cli.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l));
      const seqs = evs.map((e) => e.seq);
      assert.equal(new Set(seqs).size, seqs.length, 'none twice');
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'in order');
      assert.ok(evs.some((e) => e.kind === 'node' && e.action === 'stop'), 'the stop event, written after the stream ended, is not missed');
      assert.equal((await cli.stop('SIGINT')).code, 0, cli.stderr());
      assert.ok(!cli.stderr().includes(t.token) && !t.stderr().includes(t.token), 'no token in the output');
    });
  });

  describe(`event streams: limits (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({
        backend,
        args: ['--max-streams', '1', '--stream-buffer', '16384', '--idle-timeout', '3', '--auth-fail-limit', '0'],
      });
    });
    after(() => stopAndScan(t));

    it('max_streams: over it, 503 too_many_streams; a reader that stops reading is cut', async () => {
      await failedAuths(t, 700, 16); // ~500 KB of events, more than the socket buffers hold
      // a reader that reads nothing, from seq 0
      const sock = net.connect({ host: '127.0.0.1', port: t.port });
      await new Promise((r) => sock.once('connect', r));
      sock.pause();
      sock.write(`GET /v1/events/stream?after=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${t.token}\r\n\r\n`);
      let closed = false;
      sock.on('close', () => (closed = true));
      sock.on('error', () => {});
      // while it holds the one slot, another stream is refused
      await waitFor(async () => {
        const s = await openStream(t);
        if (s.status === 200) {
          s.close();
          return false;
        }
        const b = await refused(s);
        assert.equal(s.status, 503);
        assert.equal(b.error, 'too_many_streams');
        assert.ok(s.headers['retry-after']);
        return true;
      }, { message: 'the slow stream holding the slot' });
      // cut (idle_timeout without progress, or its buffer overflowing): the slot frees
      const s = await waitFor(async () => {
        const x = await openStream(t);
        if (x.status === 200) return x;
        await refused(x);
        return false;
      }, { timeoutMs: 30000, intervalMs: 500, message: 'the slow reader to be cut' });
      s.close();
      sock.resume();
      await waitFor(() => closed, { message: 'the slow connection closed' });
      const health = await request(t, '/health');
      assert.equal(health.status, 200);
      // on /metrics: the streams opened and refused, none open now
      const m = await scrape(t);
      assert.ok(metric(m, 'tokend_http_streams_total', { result: 'opened' }) >= 2, 'streams opened counted');
      assert.ok(metric(m, 'tokend_http_streams_total', { result: 'refused' }) >= 1, 'a refused stream counted');
      await waitFor(async () => metric(await scrape(t), 'tokend_http_streams') === 0, { message: 'tokend_http_streams back to 0' });
    });
  });
}
