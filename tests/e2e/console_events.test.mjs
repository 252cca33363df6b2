// The console's events page (issue 17), HTTP-level: the terminal of the
// latest matching events rendered on the server (escaped, oldest first,
// subjects linked), the filters, the live stream route for a session, a
// viewer, the page size on a store of 1000+ events, and the chart of
// events per minute by outcome. The real-browser test of the live terminal
// is console_browser.test.mjs.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { allEvents, api, backends, createTenant, request, startTokend, stopAndScan, storeSql, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { CookieJar, browserRequest } from './lib/oauthflow.mjs';
import { byId, consoleSignIn, htmlDecode } from './lib/console.mjs';

const XSS = '<script>alert(1)</script>';

/** The terminal's lines: [{id, seq, html}] in page order. */
function lines(html) {
  const term = byId(html, 'terminal');
  assert.ok(term, 'the page has #terminal');
  const out = [];
  const re = /<div class="line" data-id="([^"]*)" data-seq="(\d+)">([\s\S]*?)<\/div>/g;
  for (let m; (m = re.exec(term)); ) out.push({ id: m[1], seq: Number(m[2]), html: m[3] });
  return out;
}

/** The terminal's data-stream URL (decoded) and data-after. */
function streamOf(html) {
  const m = /<div id="terminal" data-stream="([^"]*)" data-after="(\d+)"/.exec(html);
  assert.ok(m, 'the terminal carries its stream URL');
  return { url: htmlDecode(m[1]), after: Number(m[2]) };
}

/** Open an SSE stream (GET, headers) and collect what arrives. */
function openStream(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { accept: 'text/event-stream', ...headers }, agent: false }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
      });
      res.on('error', () => {});
      resolve({
        status: res.statusCode,
        headers: res.headers,
        text: () => buf,
        /** the data: objects received so far */
        events: () => [...buf.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1])).filter((e) => e.id),
        close: () => req.destroy(),
      });
    });
    req.on('error', (e) => {
      if (e.code !== 'ECONNRESET') reject(e);
    });
    req.setTimeout(30000, () => req.destroy(new Error(`no answer from ${url}`)));
  });
}

async function newOperatorToken(t, name, role = 'operator') {
  const r = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name, role } });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

for (const backend of backends()) {
  describe(`console events (${backend})`, { timeout: SUITE_TIMEOUT_MS * 2 }, () => {
    let t;
    let c;
    after(async () => {
      if (t) await stopAndScan(t);
    });

    it('renders the latest events oldest first, a message with a script in it as text, subjects linked', async () => {
      t = await startTokend({ backend });
      c = await consoleSignIn(t);
      // user text in an event message: an authorization request naming an unknown client
      await request(t, `/oauth2/authorize?response_type=code&client_id=${encodeURIComponent(XSS)}&redirect_uri=${encodeURIComponent('https://app.example/cb')}`);
      await waitFor(async () => (await api(t, '/v1/events?kind=oauth&limit=10')).json.events.some((e) => e.message.includes(XSS)), {
        message: 'the oauth event with the script in its message',
      });
      const tok = await newOperatorToken(t, 'events-page-op');
      const pg = await c.get('/console/events');
      assert.equal(pg.status, 200, pg.text);
      assert.ok(pg.text.includes('&lt;script&gt;alert(1)&lt;/script&gt;'), 'the message is escaped');
      assert.ok(!pg.text.includes('<script>alert'), 'no script from a value');
      const ls = lines(pg.text);
      assert.ok(ls.length >= 3 && ls.length <= 50, `${ls.length} lines`);
      for (let i = 1; i < ls.length; i++) assert.ok(ls[i - 1].seq < ls[i].seq, 'oldest first');
      const api50 = (await api(t, '/v1/events?limit=50')).json.events;
      const [lo, hi] = [ls[0].seq, ls[ls.length - 1].seq];
      assert.deepEqual(ls.map((l) => l.id), api50.filter((e) => e.seq >= lo && e.seq <= hi).map((e) => e.id).reverse(), 'the API\'s events, oldest first');
      const line = ls.find((l) => l.id === (api50.find((e) => e.subject_id === tok.id) || {}).id);
      assert.ok(line, 'the token_create event is a line');
      assert.match(line.html, new RegExp(`<a class="s" href="/console/tokens#${tok.id}">operator_token ${tok.id}</a>`));
      assert.match(line.html, /<span class="o o-ok">ok<\/span>/);
      assert.match(line.html, /<time datetime="\d{4}-\d\d-\d\dT/);
      // the DOM contract of the live parts
      assert.match(pg.text, /<button type="button" id="pause"[^>]*>Pause<\/button>/);
      assert.match(pg.text, /<span class="live" id="live">/);
      const form = pg.forms.find((f) => f.action.endsWith('/console/events'));
      assert.ok(form, 'form#filters');
      assert.match(pg.text, /<form id="filters"[^>]*method="get"/);
      for (const n of ['kind', 'outcome', 'subject_id']) assert.match(pg.text, new RegExp(`name="${n}"`));
      // the stream continues after the newest line, with the API's names
      const s = streamOf(pg.text);
      assert.equal(s.after, ls[ls.length - 1].seq);
      assert.equal(s.url, `/console/events/stream?after=${s.after}`);
    });

    it('filters narrow the lines (kind, outcome, subject_id; empty values ignored) and the stream URL', async () => {
      const tok = await newOperatorToken(t, 'filtered-op');
      const byKind = await c.get('/console/events?kind=operator&outcome=&subject_id=');
      assert.equal(byKind.status, 200, byKind.text);
      const kl = lines(byKind.text);
      assert.ok(kl.length >= 2);
      for (const l of kl) assert.match(l.html, /<span class="k">operator<\/span>/);
      assert.match(byKind.text, /name="kind" list="kinds" value="operator"/);
      const denied = await c.get('/console/events?outcome=denied');
      const dl = lines(denied.text);
      assert.ok(dl.length >= 1);
      for (const l of dl) assert.match(l.html, /<span class="o o-denied">denied<\/span>/);
      assert.match(denied.text, /<option selected>denied<\/option>/);
      const bySubject = await c.get(`/console/events?subject_type=operator_token&subject_id=${tok.id}`);
      const sl = lines(bySubject.text);
      assert.equal(sl.length, 1, 'only the token\'s own event');
      assert.match(sl[0].html, new RegExp(tok.id));
      const s = streamOf(bySubject.text);
      assert.equal(s.url, `/console/events/stream?subject=${tok.id}&after=${sl[0].seq}`);
      // nothing matches: the terminal says so and the stream starts at the tenant's head
      const none = await c.get('/console/events?kind=no-such-kind');
      assert.equal(lines(none.text).length, 0);
      assert.match(byId(none.text, 'terminal'), /No events match/);
      const head = (await api(t, '/v1/events?limit=1')).json.events[0].seq;
      assert.ok(streamOf(none.text).after > 0 && streamOf(none.text).after <= head);
      // a value the API refuses is the API's 400, as a page
      const bad = await c.get(`/console/events?kind=${encodeURIComponent('a b')}`);
      assert.equal(bad.status, 400);
    });

    it('the stream route answers text/event-stream for a session, continuing after the page; without one, a redirect to the sign-in page', async () => {
      const pg = await c.get('/console/events?kind=operator');
      const s = streamOf(pg.text);
      const st = await openStream(new URL(s.url, t.url).href, { cookie: c.jar.header(new URL('/console/events', t.url)) });
      try {
        assert.equal(st.status, 200, st.text());
        assert.match(st.headers['content-type'], /^text\/event-stream/);
        await waitFor(() => /events after seq/.test(st.text()), { message: 'the stream opened' });
        const tok = await newOperatorToken(t, 'streamed-op');
        await request(t, '/v1/events', { token: 'tko_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000' }); // an auth event: another kind
        await waitFor(() => st.events().some((e) => e.subject_id === tok.id), { timeoutMs: 15000, message: 'the new event on the stream' });
        const evs = st.events();
        for (const e of evs) {
          assert.equal(e.kind, 'operator', 'the filter applies');
          assert.ok(e.seq > s.after, 'nothing the page showed is repeated');
        }
      } finally {
        st.close();
      }
      const anon = await browserRequest(new URL('/console/events/stream', t.url).href, { jar: new CookieJar() });
      assert.equal(anon.status, 303);
      assert.match(anon.headers.location, /^\/console\/login\?why=signin/);
    });

    it('signing out ends the session\'s open streams (event: end, reason revoked), the token still valid', async () => {
      const sc = await consoleSignIn(t);
      const st = await openStream(new URL('/console/events/stream', t.url).href, { cookie: sc.jar.header(new URL('/console/events', t.url)) });
      try {
        assert.equal(st.status, 200);
        await waitFor(() => /events after seq/.test(st.text()), { message: 'the stream opened' });
        const out = await sc.submit(await sc.get('/console/events'), '/console/logout');
        assert.equal(out.status, 303);
        await waitFor(() => /event: end\ndata: \{"reason":"revoked"\}/.test(st.text()), { timeoutMs: 15000, message: 'the stream ends with its session' });
      } finally {
        st.close();
      }
      assert.equal((await api(t, '/v1/whoami')).status, 200, 'the operator token itself is not revoked');
    });

    it('an idle session\'s stream ends too: an open terminal is not use', async () => {
      const sc = await consoleSignIn(t);
      const st = await openStream(new URL('/console/events/stream', t.url).href, { cookie: sc.jar.header(new URL('/console/events', t.url)) });
      try {
        assert.equal(st.status, 200);
        await waitFor(() => /events after seq/.test(st.text()), { message: 'the stream opened' });
        // this session only (the newest: ids are time-ordered)
        await storeSql(t, `UPDATE console_sessions SET last_seen_at = last_seen_at - ${3600 * 1000} WHERE id = (SELECT max(id) FROM console_sessions)`);
        await waitFor(() => /event: end\ndata: \{"reason":"revoked"\}/.test(st.text()), { timeoutMs: 15000, message: 'the idle session\'s stream ends' });
      } finally {
        st.close();
      }
    });

    it('a viewer reads the events page and the stream; another tenant\'s events are not shown', async () => {
      const v = await newOperatorToken(t, 'events-viewer', 'viewer');
      const vc = await consoleSignIn(t, { token: v.token });
      const pg = await vc.get('/console/events');
      assert.equal(pg.status, 200, pg.text);
      assert.ok(lines(pg.text).length >= 1);
      const st = await openStream(new URL('/console/events/stream', t.url).href, { cookie: vc.jar.header(new URL('/console/events', t.url)) });
      try {
        assert.equal(st.status, 200);
        assert.match(st.headers['content-type'], /^text\/event-stream/);
        await waitFor(() => /events after seq/.test(st.text()), { message: 'the viewer\'s stream opened' });
        // the session acts as its operator token: revoking it ends the open stream
        assert.equal((await api(t, `/v1/operator-tokens/${v.id}`, { method: 'DELETE' })).status, 200);
        await waitFor(() => /event: end\ndata: \{"reason":"revoked"\}/.test(st.text()), { timeoutMs: 15000, message: 'the stream ends: revoked' });
      } finally {
        st.close();
      }
      assert.equal((await vc.get('/console/events')).status, 303);
      const other = await createTenant(t);
      const oc = await consoleSignIn(t, { token: other.token });
      const opg = await oc.get('/console/events');
      assert.equal(opg.status, 200);
      const mine = new Set((await api(t, '/v1/events?limit=1000')).json.events.map((e) => e.id));
      for (const l of lines(opg.text)) assert.ok(!mine.has(l.id), 'only the tenant\'s own events');
    });

    it('with 1000+ events the page stays under 100 KB; the chart has one bar group per minute and counts them', async () => {
      const before = (await api(t, '/v1/events?limit=1')).json.events[0].seq;
      const N = 1000;
      let next = 0;
      const worker = async () => {
        while (next < N) {
          const i = next++;
          await newOperatorToken(t, `bulk-${i}-${'x'.repeat(40)}`);
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      const head = (await api(t, '/v1/events?limit=1')).json.events[0].seq;
      assert.ok(head - before >= N, `${head - before} new events`);
      const t0 = Date.now();
      const pg = await c.get('/console/events');
      const ms = Date.now() - t0;
      assert.equal(pg.status, 200);
      const size = Buffer.byteLength(pg.text);
      assert.ok(size < 100 * 1024, `${size} bytes`);
      console.log(`# events page with ${head} events in the store: ${size} bytes, ${ms} ms (test build, ASan)`);
      assert.equal(lines(pg.text).length, 50);
      const chart = byId(pg.text, 'chart');
      assert.ok(chart, 'section#chart');
      assert.match(chart, /<svg class="chart" viewBox="0 0 \d+ \d+"/);
      assert.doesNotMatch(chart, /style=/);
      const bars = [...chart.matchAll(/<g class="bar" data-at="([^"]+)"><title>([^<]*)<\/title>/g)];
      assert.equal(bars.length, 60, 'one bar group per minute of the hour');
      for (let i = 1; i < bars.length; i++) assert.equal(Date.parse(bars[i][1]) - Date.parse(bars[i - 1][1]), 60000);
      assert.ok(Date.parse(bars[59][1]) <= Date.now() && Date.now() - Date.parse(bars[59][1]) < 120000, 'the last bar is the current minute');
      // the titles' ok counts add up to the legend's, which counts every event of the hour
      const okSum = bars.reduce((n, b) => n + Number(/ ok (\d+)/.exec(b[2])[1]), 0);
      const legendOk = Number(/<i class="ok"><\/i>ok: (\d+)</.exec(chart)[1]);
      assert.equal(okSum, legendOk);
      assert.ok(legendOk >= N, `${legendOk} ok events counted`);
      assert.match(chart, /<rect class="ok" /);
      assert.match(chart, /<p class="legend">/);
      // the chart follows the filters
      const denied = byId((await c.get('/console/events?outcome=denied')).text, 'chart');
      assert.equal(Number(/<i class="ok"><\/i>ok: (\d+)</.exec(denied)[1]), 0);
      assert.ok(Number(/<i class="fail"><\/i>failed, error, denied: (\d+)</.exec(denied)[1]) >= 1);
    });

    it('GET /v1/events/counts (the chart\'s source): per bucket by outcome, the filters of GET /v1/events, bounded', async () => {
      const r = await api(t, '/v1/events/counts');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.bucket, 60);
      assert.equal(r.json.buckets.length, 60);
      assert.equal(r.json.complete, true);
      assert.equal(r.json.max_events, 10000);
      assert.equal(Date.parse(r.json.start), r.json.start_ms);
      assert.equal(r.json.start_ms % 60000, 0);
      // every event since start, counted once, in its minute, by outcome
      const all = await allEvents(t, `since=${r.json.start_ms}`);
      const byMinute = new Map();
      for (const e of all) {
        const k = `${Math.floor((e.at_ms - r.json.start_ms) / 60000)} ${e.outcome}`;
        byMinute.set(k, (byMinute.get(k) || 0) + 1);
      }
      let counted = 0;
      r.json.buckets.forEach((b, i) => {
        assert.equal(Date.parse(b.at), r.json.start_ms + i * 60000);
        for (const [o, n] of Object.entries(b.counts)) {
          counted += n;
          // events written after the counts (this test's reads are none) would only add
          assert.ok(n <= (byMinute.get(`${i} ${o}`) || 0), `minute ${i} ${o}: ${n}`);
        }
      });
      assert.equal(counted, r.json.counted);
      assert.ok(counted >= all.length - 5 && counted <= all.length, `${counted} counted, ${all.length} listed`);
      const op = (await api(t, '/v1/events/counts?kind=operator&outcome=ok&bucket=3600&buckets=2')).json;
      assert.equal(op.buckets.length, 2);
      assert.equal(op.start_ms % 3600000, 0);
      const opAll = await allEvents(t, `kind=operator&outcome=ok&since=${op.start_ms}`);
      assert.equal(op.counted, opAll.length);
      for (const b of op.buckets) assert.deepEqual(Object.keys(b.counts).filter((o) => o !== 'ok'), []);
      for (const q of ['bucket=0', 'buckets=241', 'kind=a%20b', 'kind=a&kind=b']) {
        const bad = await api(t, `/v1/events/counts?${q}`);
        assert.equal(bad.status, 400, q);
      }
    });

    it('console.js is served and builds lines without innerHTML or eval', async () => {
      const js = await browserRequest(new URL('/console/assets/console.js', t.url).href);
      assert.equal(js.status, 200);
      assert.match(js.text, /EventSource/);
      assert.doesNotMatch(js.text, /innerHTML|outerHTML|insertAdjacentHTML|eval\(|new Function/);
      assert.match(js.text, /textContent/);
    });
  });
}
