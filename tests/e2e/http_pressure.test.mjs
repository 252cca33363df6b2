// http_pressure.test.mjs: what a few addresses can do to the HTTP layer:
// idle connections holding every slot (the sweeper evicts under pressure).
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';

import { delay, metric, request, scrape, startTokend, waitFor, withTimeout, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

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
    tc.after(async () => {
      if (t.proc.exitCode === null) assert.equal((await t.stop()).code, 0);
    });
    // 5 addresses x 50 = 250 connections, over the cap of 200: most send
    // nothing, some are kept-alive ones idle after one answer, some sent a
    // head announcing a body that never comes. Each one cut comes back (the
    // attacker repeats), a little later so as not to spin on the per-address cap.
    const addrs = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6'];
    let stop = false;
    let cutsSeen = 0;
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
        cutsSeen++;
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
    assert.ok(cutsSeen > 0);
    // Everything closed: served at once again.
    await waitFor(async () => (await request(t, '/health', { timeoutMs: 5000 })).status === 200, { timeoutMs: 15000, message: '/health after the attack' });
  });

  it('below 3/4 of max_connections, idle and slow connections are left alone (header_timeout still rules)', async (tc) => {
    const t = await startTokend({ args: ['--max-connections', '40', '--header-timeout', '30', '--idle-timeout', '60'] });
    tc.after(async () => {
      if (t.proc.exitCode === null) assert.equal((await t.stop()).code, 0);
    });
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
