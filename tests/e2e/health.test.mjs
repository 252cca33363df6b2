// health.test.mjs: /health, /ready, /metrics, request ids, and the error
// object of unknown routes and wrong methods.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { api, backends, metric, parseMetrics, psql, request, scrape, startTokend, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

for (const backend of backends()) {
  describe(`health, readiness, metrics (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend });
    });
    after(async () => {
      if (t) assert.equal((await t.stop()).code, 0);
    });

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

    it('echoes a valid X-Request-Id, in the header and in error bodies', async () => {
      const id = 'req-Abc_123.x:y';
      const r = await request(t, '/health', { headers: { 'x-request-id': id } });
      assert.equal(r.headers['x-request-id'], id);
      const e = await request(t, '/v1/events', { headers: { 'x-request-id': id } });
      assert.equal(e.status, 401);
      assert.equal(e.headers['x-request-id'], id);
      assert.equal(e.json.request_id, id);
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

    it('writes one JSON access log line per request, never the query string', async () => {
      const rid = 'access-log-check-1';
      const r = await request(t, '/v1/events?kind=query-marker-7f3a&limit=3', { headers: { 'x-request-id': rid } });
      assert.equal(r.status, 401);
      const rid2 = 'access-log-check-2';
      await request(t, '/no-such-path-marker-9c1e', { headers: { 'x-request-id': rid2 } });
      const line = await waitFor(() => t.stderr().split('\n').find((l) => l.includes(`"request_id":"${rid}"`)), { message: 'the access log line' });
      const entry = JSON.parse(line.slice(line.indexOf('{')));
      assert.equal(entry.msg, 'request');
      assert.equal(entry.method, 'GET');
      assert.equal(entry.route, '/v1/events');
      assert.equal(entry.path, '/v1/events');
      assert.equal(entry.status, 401);
      assert.equal(typeof entry.us, 'number');
      assert.equal(entry.remote, '127.0.0.1');
      assert.ok(!t.stderr().includes('query-marker-7f3a'), 'the query string is not logged');
      // An unmatched path is not logged either (it may be anything).
      const line2 = await waitFor(() => t.stderr().split('\n').find((l) => l.includes(`"request_id":"${rid2}"`)), { message: 'the 404 access log line' });
      assert.equal(JSON.parse(line2.slice(line2.indexOf('{'))).route, null);
      assert.ok(!t.stderr().includes('no-such-path-marker-9c1e'), 'an unmatched path is not logged');
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
        ['GET', '/v1/operator-tokens/01a21426-b63d-7000-8342-2ce63af06004', 'DELETE'],
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
