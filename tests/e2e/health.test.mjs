// health.test.mjs: /health, /ready, /metrics, request ids, and the error
// object of unknown routes and wrong methods.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { api, backends, connect, metric, parseMetrics, psql, request, scrape, startTokend, stopAndScan, waitFor, watch, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

for (const backend of backends()) {
  describe(`health, readiness, metrics (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend });
    });
    after(() => stopAndScan(t));

    it('GET /health answers 200 {"status":"ok"} as JSON', async () => {
      const r = await request(t, '/health');
      assert.equal(r.status, 200);
      assert.match(r.headers['content-type'], /^application\/json/);
      assert.deepEqual(r.json, { status: 'ok' });
      assert.equal(r.headers['cache-control'], 'no-store');
    });

    it('GET /ready answers 200 with the store and its schema version', async () => {
      const r = await request(t, '/ready');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.status, 'ready');
      assert.equal(r.json.store, backend);
      assert.ok(Number.isInteger(r.json.schema_version) && r.json.schema_version >= 1, r.text);
      assert.equal(typeof r.json.node, 'string');
    });

    it('GET /metrics is Prometheus text with build info, store health, request counts and a latency histogram', async () => {
      const before = await scrape(t);
      const base = metric(before, 'tokend_http_requests_total', { method: 'GET', route: '/ready', status: '200' });
      const base404 = metric(before, 'tokend_http_requests_total', { route: 'none', status: '404' });
      for (let i = 0; i < 3; i++) assert.equal((await request(t, '/ready')).status, 200);
      assert.equal((await request(t, '/no/such/route')).status, 404);

      const r = await request(t, '/metrics');
      assert.equal(r.status, 200);
      assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
      assert.match(r.text, /^# TYPE tokend_build_info gauge$/m);
      assert.match(r.text, /^# TYPE tokend_http_requests_total counter$/m);
      assert.match(r.text, /^# TYPE tokend_http_request_duration_seconds histogram$/m);
      const m = parseMetrics(r.text);
      const build = m.filter((s) => s.name === 'tokend_build_info');
      assert.equal(build.length, 1);
      assert.equal(build[0].value, 1);
      assert.match(build[0].labels.version, /^\d+\.\d+\.\d+/);
      assert.equal(build[0].labels.store, backend);
      assert.equal(metric(m, 'tokend_store_up'), 1);

      // Exactly the requests we made, by route and status.
      assert.equal(metric(m, 'tokend_http_requests_total', { method: 'GET', route: '/ready', status: '200' }), base + 3);
      assert.equal(metric(m, 'tokend_http_requests_total', { route: 'none', status: '404' }), base404 + 1);

      // The histogram of /ready: cumulative buckets, +Inf == count, a sum.
      const buckets = m.filter((s) => s.name === 'tokend_http_request_duration_seconds_bucket' && s.labels.route === '/ready');
      assert.ok(buckets.length >= 2, 'histogram buckets for /ready');
      for (let i = 1; i < buckets.length; i++) {
        assert.ok(buckets[i].value >= buckets[i - 1].value, 'buckets are cumulative');
        const le = (s) => (s.labels.le === '+Inf' ? Infinity : Number(s.labels.le));
        assert.ok(le(buckets[i]) > le(buckets[i - 1]), 'buckets are in increasing le order');
      }
      const inf = buckets.find((s) => s.labels.le === '+Inf');
      assert.ok(inf, 'a +Inf bucket');
      const count = metric(m, 'tokend_http_request_duration_seconds_count', { method: 'GET', route: '/ready' });
      assert.equal(inf.value, count);
      assert.ok(count >= base + 3);
      const sum = metric(m, 'tokend_http_request_duration_seconds_sum', { method: 'GET', route: '/ready' });
      assert.ok(sum > 0 && Number.isFinite(sum));
    });

    // Only PostgreSQL can be taken away from under a running tokend.
    if (backend === 'postgres')
    it('GET /ready answers 503 store_unreachable while the store is down, and 200 once it is back', async () => {
      const db = new URL(t.store).pathname.slice(1);
      // Refuse new connections to the database and end the current ones.
      await psql(`ALTER DATABASE ${db} WITH ALLOW_CONNECTIONS false`);
      try {
        await psql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db}' AND pid <> pg_backend_pid()`);
        const r = await waitFor(
          async () => {
            const x = await request(t, '/ready');
            return x.status === 503 && x;
          },
          { message: '/ready to report the store unreachable' },
        );
        assert.equal(r.json.error, 'not_ready');
        assert.equal(r.json.reason, 'store_unreachable');
        assert.equal(r.json.store, 'postgres');
        assert.equal(typeof r.json.message, 'string');
        assert.equal(metric(await scrape(t), 'tokend_store_up'), 0);
        // Liveness is not readiness: /health still answers.
        assert.equal((await request(t, '/health')).status, 200);
        // An authenticated route cannot work without the store: a 5xx JSON error, no crash.
        const v = await api(t, '/v1/events?limit=1');
        assert.ok(v.status >= 500 && v.status < 600, `${v.status} ${v.text}`);
        assert.equal(typeof v.json.error, 'string');
      } finally {
        await psql(`ALTER DATABASE ${db} WITH ALLOW_CONNECTIONS true`);
      }
      await waitFor(async () => (await request(t, '/ready')).status === 200, { message: '/ready to recover once the store is back' });
      assert.equal(metric(await scrape(t), 'tokend_store_up'), 1);
      await waitFor(async () => (await api(t, '/v1/events?limit=1')).status === 200, { message: '/v1/events to work again' });
    });

    it('echoes a valid X-Request-Id, and records an id of its own beside it', async () => {
      const id = 'req-Abc_123.x:y';
      const r = await request(t, '/health', { headers: { 'x-request-id': id } });
      assert.equal(r.headers['x-request-id'], id);
      const e = await request(t, '/v1/events', { headers: { 'x-request-id': id } });
      assert.equal(e.status, 401);
      assert.equal(e.headers['x-request-id'], id);
      assert.equal(e.json.client_request_id, id);
      // The id recorded for the request (the event's trace id, the access
      // log) is tokend's, new each time: a client cannot make two requests
      // share one.
      assert.match(e.json.request_id, UUID);
      const e2 = await request(t, '/v1/events', { headers: { 'x-request-id': id } });
      assert.match(e2.json.request_id, UUID);
      assert.notEqual(e2.json.request_id, e.json.request_id);
      assert.equal(e2.json.client_request_id, id);
      // Without one, the header carries tokend's id, the one in the body.
      const n = await request(t, '/v1/events');
      assert.equal(n.headers['x-request-id'], n.json.request_id);
      assert.equal(n.json.client_request_id, undefined);
    });

    it('generates a request id when none or an invalid one is sent', async () => {
      const ids = new Set();
      const sent = [undefined, 'x'.repeat(200), 'has spaces in it', 'quote"d', 'a'.repeat(65), ''];
      for (const v of sent) {
        const headers = v === undefined ? {} : { 'x-request-id': v };
        const r = await request(t, '/health', { headers });
        const got = r.headers['x-request-id'];
        assert.ok(got, `a request id for ${JSON.stringify(v)}`);
        assert.notEqual(got, v);
        assert.match(got, UUID);
        ids.add(got);
      }
      assert.equal(ids.size, sent.length, 'every generated id is new');
      // 64 characters is still accepted.
      const max = 'b'.repeat(64);
      assert.equal((await request(t, '/health', { headers: { 'x-request-id': max } })).headers['x-request-id'], max);
    });

    it('HEAD is answered like GET, without a body', async () => {
      const r = await request(t, '/health', { method: 'HEAD' });
      assert.equal(r.status, 200);
      assert.equal(r.text, '');
      assert.match(r.headers['content-type'], /^application\/json/);
      const e = await request(t, '/v1/events', { method: 'HEAD' });
      assert.equal(e.status, 401, 'HEAD on an authenticated route still needs the token');
      const m = await request(t, '/v1/operator-tokens/01a21426-b63d-7000-8342-2ce63af06004', { method: 'HEAD' });
      assert.equal(m.status, 405);
    });

    /** The access log line of the request whose client id is rid. */
    function logLine(rid) {
      const l = t.stderr().split('\n').find((x) => x.includes(`"client_request_id":"${rid}"`));
      return l && JSON.parse(l.slice(l.indexOf('{')));
    }

    it('writes one JSON access log line per request, never the query string', async () => {
      const rid = 'access-log-check-1';
      const r = await request(t, '/v1/events?kind=query-marker-7f3a&limit=3', { headers: { 'x-request-id': rid } });
      assert.equal(r.status, 401);
      const rid2 = 'access-log-check-2';
      await request(t, '/no-such-path-marker-9c1e', { headers: { 'x-request-id': rid2 } });
      const entry = await waitFor(() => logLine(rid), { message: 'the access log line' });
      assert.equal(entry.msg, 'request');
      assert.equal(entry.method, 'GET');
      assert.equal(entry.route, '/v1/events');
      assert.equal(entry.path, '/v1/events');
      assert.equal(entry.status, 401);
      assert.equal(typeof entry.us, 'number');
      assert.equal(entry.remote, '127.0.0.1');
      assert.equal(entry.request_id, r.json.request_id, 'the recorded id, as in the error body');
      assert.ok(!t.stderr().includes('query-marker-7f3a'), 'the query string is not logged');
      // An unmatched path is not logged either (it may be anything).
      const e2 = await waitFor(() => logLine(rid2), { message: 'the 404 access log line' });
      assert.equal(e2.route, null);
      assert.ok(!t.stderr().includes('no-such-path-marker-9c1e'), 'an unmatched path is not logged');
    });

    it('the access log leaves out the path of a 405 and of a route whose parameter is not an id', async () => {
      // A token pasted where an id goes, with a method the route does not
      // take (405: no parameters were matched) and with the right one.
      const pasted = 'tko_PastedSecretMarker0123456789abcdefghij';
      const cases = [
        ['PUT', 'al-405', 405],
        ['GET', 'al-405-get', 405],
        ['DELETE', 'al-404-param', 404],
      ];
      for (const [method, rid, status] of cases) {
        const r = await api(t, `/v1/operator-tokens/${pasted}`, { method, headers: { 'x-request-id': rid } });
        assert.equal(r.status, status, `${method}: ${r.text}`);
        const e = await waitFor(() => logLine(rid), { message: `the access log line of ${method}` });
        assert.equal(e.route, '/v1/operator-tokens/{id}');
        assert.equal(e.path, undefined, `${method}: no path`);
      }
      assert.ok(!t.stderr().includes('PastedSecretMarker'), 'the pasted value is nowhere in the log');
      // An id tokend made is logged.
      const id = '01a21426-b63d-7000-8342-2ce63af06004';
      await api(t, `/v1/operator-tokens/${id}`, { method: 'DELETE', headers: { 'x-request-id': 'al-id' } });
      const e = await waitFor(() => logLine('al-id'), { message: 'the access log line with an id' });
      assert.equal(e.path, `/v1/operator-tokens/${id}`);
    });

    it('access log lines stay valid JSON whatever the request holds', async () => {
      // A method with a quote, a backslash, control characters and bytes
      // that are not UTF-8 (libmicrohttpd passes the method through).
      const method = Buffer.concat([Buffer.from('GE"T\\'), Buffer.from([0x01, 0x1b, 0xff, 0xc0, 0xed, 0xa0, 0x80]), Buffer.from('x'.repeat(100))]);
      const sock = await connect(t);
      const w = watch(sock);
      sock.write(Buffer.concat([method, Buffer.from(' /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: al-odd\r\nConnection: close\r\n\r\n')]));
      await w.closed;
      const raw = await waitFor(() => t.stderr().split('\n').find((x) => x.includes('"client_request_id":"al-odd"')), { message: 'the odd line' });
      assert.ok(!/[\x00-\x1f]/.test(raw), 'no raw control character');
      const e = JSON.parse(raw.slice(raw.indexOf('{')));
      assert.ok(e.method.startsWith('GE"T\\\u0001\u001b\ufffd'), JSON.stringify(e.method));
      assert.ok(e.method.length < 40, 'the method is cut short');
    });

    it('answers an unknown route with 404 and the JSON error object', async () => {
      for (const p of ['/nope', '/v1/nope', '/v2/events', '/healthz']) {
        const r = await request(t, p);
        assert.equal(r.status, 404, p);
        assert.match(r.headers['content-type'], /^application\/json/);
        assert.equal(r.json.error, 'not_found', p);
        assert.equal(typeof r.json.message, 'string');
        assert.ok(r.json.message.length > 0);
        assert.equal(r.json.request_id, r.headers['x-request-id']);
      }
    });

    it('answers a wrong method on a known route with 405 and an Allow header', async () => {
      const cases = [
        ['DELETE', '/health', 'GET'],
        ['POST', '/ready', 'GET'],
        ['PUT', '/metrics', 'GET'],
        ['POST', '/v1/events', 'GET'],
        ['PATCH', '/v1/operator-tokens', 'GET, POST'],
        ['GET', '/v1/operator-tokens/01a21426-b63d-7000-8342-2ce63af06004', 'DELETE, PATCH'],
      ];
      for (const [method, p, allow] of cases) {
        const r = await request(t, p, { method });
        assert.equal(r.status, 405, `${method} ${p}: ${r.text}`);
        assert.equal(r.headers.allow, allow, `${method} ${p}`);
        assert.equal(r.json.error, 'method_not_allowed');
        assert.equal(typeof r.json.message, 'string');
      }
    });
  });
}
