// http_pressure.test.mjs: what a few addresses, or a flood of refusals,
// can do to the HTTP layer: idle connections holding every slot (the
// sweeper evicts under pressure), and the access log filling the disk (a
// budget for the lines of refusals).
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';

import { delay, metric, request, scrape, startTokend, stopAndScan, waitFor, withTimeout, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

/** A TCP connection from a given loopback address; resolves once connected
 * (the kernel's accept queue: tokend may not have accepted it yet). */
function connectFrom(port, localAddress) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

describe('HTTP pressure: idle connections from a few addresses', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('past max_connections, a new client is answered within seconds (not header_timeout) and the sweeper counts pressure cuts', async (tc) => {
    const MAX = 200;
    const PER_IP = 50;
    const HEADER_TIMEOUT = 30;
    const t = await startTokend({
      args: ['--max-connections', String(MAX), '--max-connections-per-ip', String(PER_IP), '--header-timeout', String(HEADER_TIMEOUT), '--idle-timeout', '60'],
    });
    tc.after(() => stopAndScan(t));
    // 5 addresses x 50 = 250 connections, over the cap of 200: most send
    // nothing, some are kept-alive ones idle after one answer, some sent a
    // head announcing a body that never comes. Each one cut comes back (the
    // attacker repeats), a little later so as not to spin on the per-address cap.
    const addrs = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6'];
    let stop = false;
    const cutsSeen = { idle: 0, keepalive: 0, body: 0 };
    const live = new Set();
    const open = async (from, kind) => {
      let s;
      try {
        s = await connectFrom(t.port, from);
      } catch {
        if (!stop) setTimeout(() => open(from, kind), 100);
        return;
      }
      live.add(s);
      s.on('error', () => {});
      s.on('data', () => {});
      s.once('close', () => {
        live.delete(s);
        if (!stop) cutsSeen[kind]++;
        if (!stop) setTimeout(() => open(from, kind), 100);
      });
      if (kind === 'keepalive') s.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      else if (kind === 'body') s.write('POST /v1/operator-tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n');
    };
    try {
      const opening = [];
      for (const from of addrs)
        for (let i = 0; i < PER_IP; i++) opening.push(open(from, i % 10 === 0 ? 'keepalive' : i % 10 === 1 ? 'body' : 'idle'));
      await Promise.all(opening);
      // Every slot is taken (and the queue behind it holds the rest): a
      // client from yet another address gets its answer well before
      // header_timeout, and again and again while the attack goes on.
      for (let round = 0; round < 3; round++) {
        const t0 = Date.now();
        const r = await withTimeout(request(t, '/health', { from: '127.0.0.7', timeoutMs: 5000 }), 5000, `/health (round ${round}) while ${live.size} idle connections are open`);
        assert.equal(r.status, 200, r.text);
        assert.ok(Date.now() - t0 < HEADER_TIMEOUT * 1000);
      }
      const m = await withTimeout(scrape(t), 10000, 'metrics');
      assert.ok(metric(m, 'tokend_http_connections_cut_total', { reason: 'pressure' }) > 0, 'pressure cuts are counted');
      assert.equal(metric(m, 'tokend_http_connections_cut_total', { reason: 'header_timeout' }), 0, 'nothing waited for header_timeout');
    } finally {
      stop = true;
      for (const s of live) s.destroy();
    }
    // Silent ones, idle kept-alive ones, and heads whose body never comes
    // are all cut (the oldest are the first address's, of every kind).
    for (const kind of ['idle', 'keepalive', 'body']) assert.ok(cutsSeen[kind] > 0, `${kind} connections cut: ${JSON.stringify(cutsSeen)}`);
    // Everything closed: served at once again.
    await waitFor(async () => (await request(t, '/health', { timeoutMs: 5000 })).status === 200, { timeoutMs: 15000, message: '/health after the attack' });
  });

  it('below 3/4 of max_connections, idle and slow connections are left alone (header_timeout still rules)', async (tc) => {
    const t = await startTokend({ args: ['--max-connections', '40', '--header-timeout', '30', '--idle-timeout', '60'] });
    tc.after(() => stopAndScan(t));
    const socks = [];
    const closed = [];
    try {
      for (let i = 0; i < 20; i++) {
        const s = await connectFrom(t.port, '127.0.0.2');
        s.on('error', () => {});
        s.once('close', () => closed.push(i));
        socks.push(s);
      }
      // Several sweeps (every 250 ms) past the pressure grace of 1 s.
      await delay(2500);
      assert.deepEqual(closed, [], 'no idle connection was cut below the pressure mark');
      assert.equal(metric(await scrape(t), 'tokend_http_connections_cut_total', { reason: 'pressure' }), 0);
    } finally {
      for (const s of socks) s.destroy();
    }
  });
});

/** The access log's lines in stderr (log_format json). */
function logLines(t) {
  const out = [];
  for (const l of t.stderr().split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      out.push(JSON.parse(l));
    } catch {
      assert.fail(`not a JSON line: ${l}`);
    }
  }
  return out;
}

/** Send `count` requests pipelined on one connection and read every answer. */
async function pipelined(t, req, count, from) {
  const s = await connectFrom(t.port, from);
  let data = '';
  s.setEncoding('latin1');
  s.on('data', (d) => (data += d));
  s.on('error', () => {});
  s.write(req.repeat(count));
  const statuses = () => [...data.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));
  await waitFor(() => statuses().length >= count, { timeoutMs: 60000, intervalMs: 50, message: `${count} pipelined answers` });
  s.destroy();
  return statuses();
}

describe('HTTP pressure: the access log under a flood of refusals', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('refusals over access_log_refusals_per_s are counted, summed up once a second, and the counts add up; other requests are all logged', async (tc) => {
    const PER_S = 20;
    const t = await startTokend({ args: ['--log-format', 'json', '--access-log-refusals-per-s', String(PER_S), '--auth-fail-limit', '5'] });
    tc.after(() => stopAndScan(t));
    const t0 = Date.now();
    // Unknown routes (404), then failed authentications from one address:
    // 401 five times, then 429.
    const N404 = 600;
    const NAUTH = 400;
    const a = await pipelined(t, 'GET /no/such/route HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', N404, '127.0.0.8');
    const b = await pipelined(t, 'GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer tko_nope\r\n\r\n', NAUTH, '127.0.0.9');
    const seconds = Math.ceil((Date.now() - t0) / 1000) + 1;
    const sent = {};
    for (const st of [...a, ...b]) sent[st] = (sent[st] || 0) + 1;
    assert.equal(sent[404], N404);
    assert.ok(sent[401] > 0 && sent[429] > 0, JSON.stringify(sent));
    // A successful request in the same flood is always logged.
    const ok = [];
    for (let i = 0; i < 5; i++) {
      const r = await request(t, '/health', { headers: { 'x-request-id': `pressure-ok-${i}` } });
      assert.equal(r.status, 200);
      ok.push(`pressure-ok-${i}`);
    }
    // Within about a second the last summary is out: logged lines plus the
    // summaries' counts add up to every refusal, status by status.
    const tally = () => {
      const lines = logLines(t);
      const logged = {};
      const suppressed = {};
      let summaries = 0;
      for (const l of lines) {
        if (l.msg === 'request' && [401, 404, 429].includes(l.status)) logged[l.status] = (logged[l.status] || 0) + 1;
        if (typeof l.suppressed === 'number') {
          summaries++;
          let sum = 0;
          for (const [k, v] of Object.entries(l)) {
            const m = /^status_(\d{3})$/.exec(k);
            if (m) {
              suppressed[m[1]] = (suppressed[m[1]] || 0) + v;
              sum += v;
            }
          }
          assert.equal(sum, l.suppressed, `a summary's counts add up: ${JSON.stringify(l)}`);
        }
      }
      return { lines, logged, suppressed, summaries };
    };
    const done = await waitFor(
      () => {
        const x = tally();
        // the access log line is written when the request completes, which
        // can be just after its client has the answer: wait for those too
        const okLogged = ok.every((rid) => x.lines.some((l) => l.msg === 'request' && l.client_request_id === rid));
        return okLogged && [401, 404, 429].every((st) => (x.logged[st] || 0) + (x.suppressed[st] || 0) === sent[st]) ? x : null;
      },
      { timeoutMs: 10000, message: 'logged refusals plus suppressed counts to add up to the refusals sent', intervalMs: 100 },
    );
    const loggedTotal = Object.values(done.logged).reduce((x, y) => x + y, 0);
    const suppressedTotal = Object.values(done.suppressed).reduce((x, y) => x + y, 0);
    assert.ok(suppressedTotal > 0, 'some refusals were left out');
    assert.ok(loggedTotal <= PER_S * (seconds + 1), `${loggedTotal} refusal lines in about ${seconds} s, budget ${PER_S}/s`);
    assert.ok(done.summaries >= 1 && done.summaries <= seconds + 2, `${done.summaries} summary lines in about ${seconds} s`);
    for (const rid of ok) assert.ok(done.lines.some((l) => l.msg === 'request' && l.client_request_id === rid && l.status === 200), `the line of ${rid}`);
    // The metric counts the same.
    const m = await scrape(t);
    for (const st of ['401', '404', '429'])
      assert.equal(metric(m, 'tokend_http_access_log_suppressed_total', { status: st }), done.suppressed[st] || 0, `suppressed ${st}`);
  });
});
