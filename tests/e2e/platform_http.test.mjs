// platform_http.test.mjs: issue 16 item 5, the HTTP additions seen from
// outside: the client address behind a trusted proxy (X-Forwarded-For) for
// the authentication rate limiter and the events, and duplicate query
// parameters refused by GET /v1/events.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { allEvents, api, backends, request, startTokend, stopAndScan, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const BAD = 'Bearer tko_000000000000000000000000000000000000'; // well-formed length, bad checksum
const PROXY = '127.0.0.7';
const UNTRUSTED = '127.0.0.8';

for (const backend of backends()) {
  describe(`platform: HTTP additions (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    it('through a trusted proxy each X-Forwarded-For client has its own failure budget; an untrusted peer\'s header is ignored', async (tc) => {
      const t = await startTokend({
        backend,
        args: ['--auth-fail-limit', '3', '--auth-fail-window', '60', '--trusted-proxies', `${PROXY}, 10.0.0.0/8`],
      });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const fail = (from, xff) =>
        request(t, '/v1/whoami', { auth: BAD, from, headers: xff ? { 'x-forwarded-for': xff } : {} });

      // client A through the proxy (the left-most entry is the client's own
      // claim and is not believed; the right-most untrusted one is A)
      for (let i = 0; i < 3; i++) assert.equal((await fail(PROXY, '192.0.2.99, 198.51.100.1, 10.1.1.1')).status, 401);
      const limited = await fail(PROXY, '198.51.100.1');
      assert.equal(limited.status, 429, limited.text);
      assert.equal(limited.json.error, 'rate_limited');
      // client B through the same proxy: its own budget
      const b = await fail(PROXY, '198.51.100.2');
      assert.equal(b.status, 401, b.text);
      // a malformed header from the proxy: the proxy's own address, its own budget
      assert.equal((await fail(PROXY, '198.51.100.1, not-an-ip')).status, 401);

      // an untrusted peer: X-Forwarded-For changes nothing, one budget for the peer
      for (let i = 0; i < 3; i++) assert.equal((await fail(UNTRUSTED, `198.51.100.${10 + i}`)).status, 401);
      const u = await fail(UNTRUSTED, '198.51.100.20');
      assert.equal(u.status, 429, u.text);

      // the events name the client address, never the forged left-most one
      await waitFor(
        async () => {
          const evs = await allEvents(t, 'kind=operator&action=authenticate');
          const remotes = new Set(evs.map((e) => e.detail && e.detail.remote));
          return remotes.has('198.51.100.1') && remotes.has('198.51.100.2') && remotes.has(UNTRUSTED);
        },
        { timeoutMs: 10000, message: 'events for both proxied clients and the untrusted peer' },
      ).catch(async (e) => {
        const evs = await allEvents(t, 'kind=operator&action=authenticate');
        throw new Error(`${e.message}: ${JSON.stringify(evs.map((x) => x.detail))}`);
      });
      const evs = await allEvents(t, 'kind=operator&action=authenticate');
      const remotes = new Set(evs.map((e) => e.detail && e.detail.remote));
      assert.ok(!remotes.has('192.0.2.99'), 'the left-most X-Forwarded-For entry is never used');
      assert.ok(!remotes.has('198.51.100.10'), "an untrusted peer's X-Forwarded-For is never used");
      // a good token through the proxy still works
      assert.equal((await api(t, '/v1/whoami', { from: PROXY, headers: { 'x-forwarded-for': '198.51.100.1' } })).status, 200);
      await stopAndScan(t);
    });

    it('GET /v1/events refuses a duplicated limit, cursor or filter with 400 duplicate_parameter naming it', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      for (const q of ['limit=5&limit=6', 'cursor=9&cursor=9', 'kind=auth&kind=keyring', 'outcome=ok&source=x&outcome=ok']) {
        const r = await api(t, `/v1/events?${q}`);
        assert.equal(r.status, 400, `${q}: ${r.text}`);
        assert.equal(r.json.error, 'duplicate_parameter');
        assert.equal(r.json.field, q.split('=')[0]);
      }
      assert.equal((await api(t, '/v1/events?limit=5&kind=keyring')).status, 200);
      await stopAndScan(t);
    });
  });
}
