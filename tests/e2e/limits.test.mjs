// limits.test.mjs: hostile input and resource limits: body size, JSON
// validation, odd paths, oversized headers, slow clients, idle connections
// and the connection cap. tokend runs with small limits so that they are
// cheap to reach.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { api, backends, connect, delay, metric, rawExchange, request, scrape, startTokend, stopAndScan, waitFor, watch, withTimeout, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const MAX_BODY = 2048;
const IDLE_TIMEOUT = 2;
const MAX_CONNECTIONS = 8;
const HEADER_TIMEOUT = 8;
const LIMIT_ARGS = [
  '--max-body', String(MAX_BODY), '--idle-timeout', String(IDLE_TIMEOUT), '--header-timeout', String(HEADER_TIMEOUT),
  '--max-connections', String(MAX_CONNECTIONS), '--threads', '2',
];

for (const backend of backends()) {
  describe(`limits and hostile input (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let auth;
    before(async () => {
      t = await startTokend({ backend, args: LIMIT_ARGS });
      auth = `Authorization: Bearer ${t.token}\r\n`;
    });
    after(() => stopAndScan(t));

    async function tokenNames() {
      const r = await api(t, '/v1/operator-tokens');
      assert.equal(r.status, 200, r.text);
      return r.json.tokens.map((x) => x.name);
    }

    async function assertAlive() {
      assert.equal(t.proc.exitCode, null, `tokend exited:\n${t.stderr().slice(-3000)}`);
      const r = await request(t, '/health');
      assert.equal(r.status, 200);
    }

    /** A JSON object body of exactly n bytes: {"name":"<name>"} padded with
     * spaces, which JSON allows. */
    function jsonOfSize(name, n) {
      const core = JSON.stringify({ name });
      assert.ok(core.length + 1 <= n);
      return `{${' '.repeat(n - core.length)}${core.slice(1)}`;
    }

    it('a body of exactly max_body bytes is accepted', async () => {
      const body = jsonOfSize('edge', MAX_BODY);
      assert.equal(Buffer.byteLength(body), MAX_BODY);
      const r = await api(t, '/v1/operator-tokens', { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.json.name, 'edge');
    });

    it('a body over max_body with Content-Length gets 413 body_too_large and creates nothing', async () => {
      for (const size of [MAX_BODY + 1, 1 << 20]) {
        const name = `big-${size}`;
        const body = Buffer.from(jsonOfSize(name, size));
        const sock = await connect(t);
        const w = watch(sock);
        // The headers and the start of the body; tokend answers from the
        // Content-Length alone, without reading the body. (Sending all of a
        // 1 MB body before reading would make this Node client lose the
        // answer: the server closes with the body unread, the write fails
        // with EPIPE, and Node drops the socket before reading what came.)
        sock.write(
          `POST /v1/operator-tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
        );
        sock.write(body.subarray(0, Math.min(body.length, 16 * 1024)));
        await waitFor(() => w.response() || w.ended, { message: `an answer to a ${size}-byte body` });
        if (!w.ended) sock.write(body.subarray(16 * 1024), () => {});
        const res = w.response();
        sock.destroy();
        assert.ok(res, `a response to a ${size}-byte body (got: ${w.text().slice(0, 200)})`);
        assert.equal(res.status, 413, res.body);
        assert.equal(res.json.error, 'body_too_large');
        assert.match(res.json.message, new RegExp(String(MAX_BODY)));
        assert.match(res.json.message, new RegExp(String(size)), 'the message says how big the body was');
        assert.ok(!(await tokenNames()).includes(name), 'nothing was created');
      }
    });

    it('a chunked body over max_body gets 413 and creates nothing', async () => {
      const body = JSON.stringify({ name: 'chunky', pad: 'y'.repeat(4 * MAX_BODY) });
      let chunked = '';
      for (let i = 0; i < body.length; i += 500) {
        const c = body.slice(i, i + 500);
        chunked += `${c.length.toString(16)}\r\n${c}\r\n`;
      }
      chunked += '0\r\n\r\n';
      const res = await rawExchange(
        t,
        `POST /v1/operator-tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunked}`,
      );
      assert.ok(res.response, `a response (got: ${res.raw.slice(0, 200)})`);
      assert.equal(res.response.status, 413, res.response.body);
      assert.equal(res.response.json.error, 'body_too_large');
      assert.equal(res.response.headers.connection, 'close');
      assert.ok(!(await tokenNames()).includes('chunky'), 'nothing was created');
      // A small chunked body is fine.
      const small = JSON.stringify({ name: 'chunked-ok' });
      const ok = await rawExchange(
        t,
        `POST /v1/operator-tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${small.length.toString(16)}\r\n${small}\r\n0\r\n\r\n`,
      );
      assert.equal(ok.response?.status, 201, ok.raw.slice(0, 300));
    });

    it('a chunked body over max_body is not read on: 413 and the connection closed long before 64 MiB', async () => {
      const sock = await connect(t);
      const w = watch(sock);
      sock.write(`POST /v1/operator-tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const chunk = Buffer.from(`10000\r\n${'z'.repeat(0x10000)}\r\n`);
      const TOTAL = 64 * 1024 * 1024;
      let written = 0;
      // Send as fast as tokend takes it, until it closes (or all of it is out).
      while (!w.ended && !sock.destroyed && written < TOTAL) {
        const more = sock.write(chunk, () => {});
        written += 0x10000;
        if (!more) await Promise.race([new Promise((r) => sock.once('drain', r)), w.closed]);
      }
      await withTimeout(w.closed, 15000, 'tokend to close the connection');
      assert.ok(written < TOTAL / 2, `tokend read on: ${written} bytes were taken before the close`);
      // tokend wrote a 413 before closing, but a Node client that is still
      // writing loses it (the write fails, Node destroys the socket before
      // reading what came); a client that stops sending reads it (the test
      // above). Here: if it was read, it is the 413.
      const res = w.response();
      if (res) assert.equal(res.status, 413, res.body);
      await assertAlive();
    });

    it('rejects bodies that are not one JSON object with the allowed fields', async () => {
      const post = (body, headers = { 'content-type': 'application/json' }) => api(t, '/v1/operator-tokens', { method: 'POST', body, headers });
      const cases = [
        ['{"name": "x"', 'invalid_json', undefined, 'truncated JSON'],
        ['{name: "x"}', 'invalid_json', undefined, 'unquoted key'],
        ['', 'invalid_json', undefined, 'empty body'],
        ['[{"name":"x"}]', 'invalid_json', undefined, 'an array'],
        ['"name"', 'invalid_json', undefined, 'a string'],
        ['null', 'invalid_json', undefined, 'null'],
        ['{"name":"a","name":"b"}', 'invalid_json', undefined, 'a duplicate key'],
        ['{"name":"x","colour":"red"}', 'unknown_field', 'colour', 'an unknown field'],
        ['{"role":"admin"}', 'missing_field', 'name', 'no name'],
        ['{"name":""}', 'invalid_field', 'name', 'an empty name'],
        ['{"name":"a\\u0001b"}', 'invalid_field', 'name', 'a control character'],
        [`{"name":"${'n'.repeat(65)}"}`, 'invalid_field', 'name', 'a long name'],
        ['{"name":"x","role":"root"}', 'invalid_field', 'role', 'an unknown role'],
        ['{"name":"x","expires_in":5}', 'invalid_field', 'expires_in', 'too short a lifetime'],
        ['{"name":"x","expires_in":"3600"}', 'invalid_field', 'expires_in', 'a string lifetime'],
        ['{"name":7}', 'invalid_field', 'name', 'a number as name'],
      ];
      const before = await tokenNames();
      for (const [body, error, field, label] of cases) {
        const r = await post(body);
        assert.equal(r.status, 400, `${label}: ${r.text}`);
        assert.equal(r.json.error, error, `${label}: ${r.text}`);
        if (field) assert.equal(r.json.field, field, label);
        assert.equal(typeof r.json.message, 'string');
      }
      assert.deepEqual(await tokenNames(), before, 'nothing was created');
    });

    it('rejects a body that is not application/json', async () => {
      for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
        const r = await api(t, '/v1/operator-tokens', { method: 'POST', body: '{"name":"typed"}', headers: { 'content-type': ct } });
        assert.ok(r.status === 400 || r.status === 415, `${ct}: ${r.status} ${r.text}`);
        assert.equal(r.json.error, 'unsupported_media_type', ct);
        assert.equal(r.json.field, 'Content-Type');
      }
      assert.ok(!(await tokenNames()).includes('typed'));
      // application/json with a charset is fine.
      const ok = await api(t, '/v1/operator-tokens', { method: 'POST', body: '{"name":"typed"}', headers: { 'content-type': 'application/json; charset=utf-8' } });
      assert.equal(ok.status, 201, ok.text);
    });

    it('odd paths never crash tokend and get a 4xx', async () => {
      const paths = [
        '//v1/events',
        '/v1/events/',
        '/v1/../health',
        '/%2e%2e/health',
        '/%00',
        `/${'a'.repeat(10 * 1024)}`,
        `/v1/${'b/'.repeat(2000)}`,
        '*',
        'health',
        '/v1/events?kind=%00',
        '/v1/events?limit=%ff%fe',
        '/v1/operator-tokens/%2e%2e',
        '/v1/operator-tokens//',
        '/\u00e9t\u00e9',
        '/%',
        '/%zz',
      ];
      for (const p of paths) {
        const res = await rawExchange(t, `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Connection: close\r\n\r\n`);
        const label = JSON.stringify(p.length > 40 ? `${p.slice(0, 40)}...(${p.length})` : p);
        assert.ok(res.response, `${label}: a response (got ${JSON.stringify(res.raw.slice(0, 100))})`);
        assert.ok(res.response.status >= 400 && res.response.status < 500, `${label}: ${res.response.status} ${res.response.body.slice(0, 200)}`);
        await assertAlive();
      }
      // A request line that is not HTTP at all.
      const junk = await rawExchange(t, 'HELLO\r\n\r\n');
      assert.ok(!junk.response || (junk.response.status >= 400 && junk.response.status < 500), junk.raw.slice(0, 100));
      await assertAlive();
    });

    it('a NUL byte (%00) in the path is refused, not cut off', async () => {
      // The router sees a C string: "/health%00.json" must not become
      // "/health", nor ".../{id}%00x" the id alone (a proxy in front would
      // see one path and tokend act on another).
      for (const p of ['/health%00', '/health%00.json', '/ready%00/../x']) {
        const res = await rawExchange(t, `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
        assert.ok(res.response, p);
        assert.ok(res.response.status >= 400 && res.response.status < 500, `GET ${p}: ${res.response.status} ${res.response.body}`);
      }
      const c = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'nul-target' } });
      assert.equal(c.status, 201, c.text);
      const d = await rawExchange(t, `DELETE /v1/operator-tokens/${c.json.id}%00x HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Connection: close\r\n\r\n`);
      assert.ok(d.response);
      const after = (await api(t, '/v1/operator-tokens')).json.tokens.find((x) => x.id === c.json.id);
      assert.equal(after.revoked_at, null, `DELETE .../${c.json.id}%00x revoked ${c.json.id} (answer ${d.response.status} ${d.response.body})`);
      assert.ok(d.response.status >= 400 && d.response.status < 500, `DELETE with %00: ${d.response.status}`);
    });

    it('a NUL byte (%00) in a query value is refused, not cut off', async () => {
      // kind=node%00junk must not filter by "node".
      for (const q of ['kind=node%00junk', 'action=start%00', 'limit=5%00000']) {
        const r = await api(t, `/v1/events?${q}`);
        assert.equal(r.status, 400, `GET /v1/events?${q}: ${r.status} ${r.text.slice(0, 200)}`);
      }
    });

    it('a header over max_header gets a 4xx or a closed connection, and tokend goes on', async () => {
      for (const size of [40 * 1024, 100 * 1024]) {
        const res = await rawExchange(t, `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'h'.repeat(size)}\r\n\r\n`);
        if (res.response) assert.ok(res.response.status >= 400 && res.response.status < 500, `${size}: ${res.response.status}`);
        else assert.ok(res.closed, 'closed without a response');
        await assertAlive();
      }
      // So many small headers that together they are over the limit.
      let many = '';
      for (let i = 0; i < 3000; i++) many += `X-H${i}: ${'v'.repeat(20)}\r\n`;
      const res = await rawExchange(t, `GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n${many}\r\n`);
      if (res.response) assert.ok(res.response.status >= 400 && res.response.status < 500, `many headers: ${res.response.status}`);
      else assert.ok(res.closed);
      await assertAlive();
    });

    it('slow clients sending one byte a second do not stop others, and are answered if their head is in within header_timeout', async () => {
      const line = 'GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n';
      // Four: with the other requests' connection, below 3/4 of
      // max_connections, where no pressure cut applies (above it, heads that
      // are not in within a second are cut: http_pressure.test.mjs).
      const socks = await Promise.all(Array.from({ length: 4 }, () => connect(t)));
      const watched = socks.map(watch);
      let sent = 0;
      let stop = false;
      // One byte a second on each slow socket, until told to stop (or the
      // request line, bar its last byte, is out).
      const trickle = (async () => {
        while (!stop && sent < line.length - 1) {
          for (const s of socks) s.write(line[sent]);
          sent++;
          await delay(1000);
        }
        return 'trickle';
      })();
      try {
        // Let them hold their connections across a few seconds first.
        await waitFor(() => sent >= 3, { timeoutMs: 10000, message: 'three bytes trickled' });
        const others = (async () => {
          for (let i = 0; i < 5; i++) {
            const r = await request(t, '/health');
            assert.equal(r.status, 200);
          }
          const e = await api(t, '/v1/events?limit=1');
          assert.equal(e.status, 200);
          return 'others';
        })();
        const first = await Promise.race([others, trickle]);
        assert.equal(first, 'others', 'the other requests completed while the slow clients were still trickling');
        for (const w of watched) assert.equal(w.data.length, 0, 'a slow client is not answered before its request is complete');
      } finally {
        stop = true;
        await trickle;
      }
      // Finish the slow requests (well within header_timeout): each is answered.
      for (const s of socks) s.write(line.slice(sent));
      await waitFor(() => watched.every((w) => w.response()), { timeoutMs: 10000, message: 'answers to the slow clients' });
      for (const w of watched) assert.equal(w.response().status, 200);
      for (const s of socks) s.destroy();
    });

    it('a client trickling its head one byte per idle_timeout - 1 seconds is cut off at header_timeout with a 408', async () => {
      const before = metric(await scrape(t), 'tokend_http_connections_cut_total', { reason: 'header_timeout' });
      // Long enough that trickling all of it would take 4 x header_timeout.
      const line = `GET /health?${'p'.repeat(HEADER_TIMEOUT * 4 / (IDLE_TIMEOUT - 1))} HTTP/1.1\r\nHost: localhost\r\n\r\n`;
      const sock = await connect(t);
      const w = watch(sock);
      const t0 = Date.now();
      let sent = 0;
      const trickle = (async () => {
        while (!w.ended && sent < line.length) {
          sock.write(line[sent++], () => {});
          await delay((IDLE_TIMEOUT - 1) * 1000);
        }
      })();
      await withTimeout(w.closed, HEADER_TIMEOUT * 4 * 1000, 'tokend to cut the trickling client');
      await trickle;
      assert.ok(sent < line.length, `cut before the head was complete (${sent} of ${line.length} bytes)`);
      // Not for being idle: it sent a byte every idle_timeout - 1 seconds.
      assert.ok(Date.now() - t0 >= (HEADER_TIMEOUT - 1) * 1000, `cut after ${Date.now() - t0} ms, before header_timeout`);
      const res = w.response();
      assert.ok(res, `a reply before the close (got ${JSON.stringify(w.text().slice(0, 200))})`);
      assert.equal(res.status, 408);
      assert.equal(res.json.error, 'request_timeout');
      assert.match(res.json.message, /header_timeout/);
      assert.equal(metric(await scrape(t), 'tokend_http_connections_cut_total', { reason: 'header_timeout' }), before + 1);
      await assertAlive();
    });

    it('a body slower than min_body_rate is cut off after header_timeout; a small slow body is fine', async () => {
      const body = JSON.stringify({ name: 'slow-body', pad: 'x'.repeat(1500) });
      const sock = await connect(t);
      const w = watch(sock);
      sock.write(`POST /v1/operator-tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
      let sent = 0;
      const t0 = Date.now();
      while (!w.ended && sent < body.length) {
        sock.write(body.slice(sent, sent + 2), () => {});
        sent += 2;
        await delay((IDLE_TIMEOUT - 1) * 1000);
      }
      assert.ok(w.ended && sent < body.length, `cut before the body was complete (${sent} of ${body.length})`);
      assert.ok(Date.now() - t0 >= (HEADER_TIMEOUT - 1) * 1000, 'not before the grace of header_timeout');
      assert.equal(w.response()?.status, 408, w.text().slice(0, 300));
      assert.match(w.response().json.message, /min_body_rate/);
      assert.ok(!(await tokenNames()).includes('slow-body'), 'nothing was created');
      // A small body sent slowly within the grace is fine.
      const small = JSON.stringify({ name: 'slow-small' });
      const s2 = await connect(t);
      const w2 = watch(s2);
      s2.write(`POST /v1/operator-tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Content-Type: application/json\r\nContent-Length: ${small.length}\r\nConnection: close\r\n\r\n`);
      for (let i = 0; i < small.length; i += 8) {
        s2.write(small.slice(i, i + 8));
        await delay(300);
      }
      await waitFor(() => w2.response(), { message: 'the answer to the small slow body' });
      assert.equal(w2.response().status, 201, w2.response().body);
      s2.destroy();
    });

    it('a silent connection, and an idle keep-alive one, are closed after idle_timeout', async () => {
      const t0 = Date.now();
      const silent = watch(await connect(t));
      const keep = await connect(t);
      const kw = watch(keep);
      keep.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      await waitFor(() => kw.response(), { timeoutMs: 5000, message: 'the keep-alive answer' });
      assert.equal(kw.response().status, 200);
      await withTimeout(Promise.all([silent.closed, kw.closed]), (IDLE_TIMEOUT + 15) * 1000, 'tokend to close the idle connections');
      assert.equal(silent.data.length, 0, 'nothing is sent to a silent client');
      // Closed because idle, not at once.
      assert.ok(silent.closedAt - t0 >= 1000, `closed after ${silent.closedAt - t0} ms`);
      await assertAlive();
    });

    it('the connection cap: a connection over max_connections waits until one in use closes', async (tc) => {
      // Its own node, with room for bodies: the held connections are in use
      // (a body arriving at a good rate), so no pressure cut frees a slot;
      // idle ones would be cut (http_pressure.test.mjs).
      const c = await startTokend({ backend, args: ['--max-connections', String(MAX_CONNECTIONS), '--threads', '2', '--header-timeout', String(HEADER_TIMEOUT)] });
      tc.after(async () => {
        if (c.proc.exitCode === null) assert.equal((await c.stop()).code, 0);
      });
      // Hold max_connections connections, each answered once (so each is
      // surely accepted), then at once sending a large body at 4 KB/s.
      const held = [];
      const timers = [];
      const post = 'POST /v1/operator-tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n';
      try {
        for (let i = 0; i < MAX_CONNECTIONS; i++) {
          const s = await connect(c);
          const w = watch(s);
          const h = { s, w, posting: false };
          s.on('data', () => {
            if (h.posting || !w.response()) return;
            h.posting = true;
            s.write(post);
            timers.push(setInterval(() => s.destroyed || s.write(' '.repeat(400)), 100));
          });
          s.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
          held.push(h);
        }
        await waitFor(() => held.every((h) => h.posting), { timeoutMs: 15000, message: 'an answer on every held connection' });
        for (const h of held) assert.equal(h.w.response().status, 200);
        // One more connection: it is not served while the cap is reached.
        const extra = await connect(c).catch((e) => e);
        if (extra instanceof Error) return; // refused outright: also a cap
        const ew = watch(extra);
        extra.write('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
        await delay(1500);
        assert.equal(ew.response(), null, 'no answer over the cap');
        assert.ok(held.every((h) => !h.w.ended), 'no connection in use was cut');
        if (ew.ended) {
          // Closed at accept: the other way to refuse.
          extra.destroy();
        } else {
          // Freeing one slot lets it in.
          held[0].s.destroy();
          await waitFor(() => ew.response() || ew.ended, { timeoutMs: 10000, message: 'the waiting connection to be served once a slot is free' });
          assert.equal(ew.response()?.status, 200, ew.text().slice(0, 200));
          extra.destroy();
        }
      } finally {
        for (const x of timers) clearInterval(x);
        for (const h of held) h.s.destroy();
      }
      // Everything closed: served again.
      await waitFor(async () => (await request(c, '/health', { timeoutMs: 5000 })).status === 200, { timeoutMs: 15000, message: '/health after the cap test' });
      assert.equal(metric(await scrape(c), 'tokend_http_connections_cut_total', { reason: 'pressure' }), 0);
    });
  });
}
