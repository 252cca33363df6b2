// oauth_cimd.test.mjs: client ID metadata documents (issue 15 item 2). A
// client_id that is a URL makes tokend fetch the document (the request
// parks meanwhile) through the outbound client: fetched once and cached,
// bounded in size (5 KiB) and time (oauth_cimd_timeout), a failure
// remembered briefly, the document's client_id must be its URL, it is a
// public client, its scopes come from the default tenant's catalogue. A
// fake document server on 127.0.0.1 serves good and hostile documents
// (the loopback override, --dev only); without the override, http,
// loopback and the cloud metadata address are refused (SSRF).
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';

import {
  allEvents,
  api,
  backends,
  metric,
  request,
  scrape,
  serveExpectingExit,
  startTokend,
  stopAndScan,
  SUITE_TIMEOUT_MS,
} from './lib/tokend.mjs';

function clientAuth(t, form) {
  return request(t, '/oauth2/test/client-auth', {
    method: 'POST',
    body: new URLSearchParams(form).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
}

/** The fake document server: path -> handler; hits counted per path. */
async function startDocs() {
  const hits = new Map();
  const held = [];
  let base;
  const doc = (p, extra = {}) => ({ client_id: `${base}${p}`, client_name: `doc ${p}`, redirect_uris: ['http://127.0.0.1:7777/cb'], ...extra });
  const routes = {
    '/good': () => [200, doc('/good', { scope: 'read' })],
    '/noscope': () => [200, doc('/noscope')],
    '/big': () => [200, doc('/big', { padding: 'x'.repeat(6000) })],
    '/mismatch': () => [200, doc('/good')],
    '/missing': () => [404, { error: 'nope' }],
    '/secret': () => [200, doc('/secret', { client_secret: 'shh' })],
    '/pkjwt': () => [200, doc('/pkjwt', { token_endpoint_auth_method: 'private_key_jwt' })],
    '/badscope': () => [200, doc('/badscope', { scope: 'nope' })],
    '/noredirect': () => [200, { client_id: `${base}/noredirect` }],
    '/evilredirect': () => [200, doc('/evilredirect', { redirect_uris: ['http://evil.example/cb'] })],
    '/notjson': () => [200, 'hello'],
  };
  const server = http.createServer((req, res) => {
    hits.set(req.url, (hits.get(req.url) || 0) + 1);
    if (req.url === '/slow') {
      held.push(res);
      return;
    }
    const h = routes[req.url];
    const [status, body] = h ? h() : [404, {}];
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
  return {
    base,
    hits: (p) => hits.get(p) || 0,
    close: () => {
      for (const r of held) r.destroy();
      server.closeAllConnections?.();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

for (const backend of backends()) {
  describe(`client ID metadata documents (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t, docs;
    before(async () => {
      docs = await startDocs();
      t = await startTokend({ backend, args: ['--oauth-cimd-allow-loopback', '--oauth-cimd-timeout', '1'] });
      for (const name of ['read', 'write'])
        assert.equal((await api(t, '/v1/oauth/scopes', { method: 'POST', json: { name } })).status, 201);
    });
    after(async () => {
      if (t) await stopAndScan(t);
      if (docs) await docs.close();
    });

    it('fetched once, then answered from the cache; a public client of the default tenant', async () => {
      const url = `${docs.base}/good`;
      let r = await clientAuth(t, { client_id: url });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.client_id, url);
      assert.equal(r.json.token_endpoint_auth_method, 'none');
      assert.equal(r.json.confidential, false);
      assert.deepEqual(r.json.scopes, ['read']);
      assert.equal(docs.hits('/good'), 1);
      for (let i = 0; i < 3; i++) {
        r = await clientAuth(t, { client_id: url });
        assert.equal(r.status, 200, r.text);
      }
      assert.equal(docs.hits('/good'), 1, 'cached');
      const l = await api(t, '/v1/oauth/clients');
      const c = l.json.clients.find((x) => x.client_id === url);
      assert.ok(c, 'stored as a client');
      assert.equal(c.origin, 'metadata_document');
      assert.equal(c.name, 'doc /good');
      // no scope in the document: the whole catalogue
      r = await clientAuth(t, { client_id: `${docs.base}/noscope` });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual([...r.json.scopes].sort(), ['read', 'write']);
      // an operator disables it: refused without a new fetch
      const d = await api(t, `/v1/oauth/clients/${c.id}`, { method: 'PATCH', json: { status: 'disabled' } });
      assert.equal(d.status, 200, d.text);
      r = await clientAuth(t, { client_id: url });
      assert.equal(r.status, 401, r.text);
      assert.match(r.json.error_description, /disabled/);
      assert.equal(docs.hits('/good'), 1);
    });

    it('hostile and unusable documents are invalid_client, each saying why', async () => {
      const cases = [
        ['/big', /5120/],
        ['/mismatch', /client_id/],
        ['/missing', /HTTP 404/],
        ['/secret', /client_secret/],
        ['/pkjwt', /none/],
        ['/badscope', /catalogue/],
        ['/noredirect', /redirect_uris/],
        ['/evilredirect', /redirect/],
        ['/notjson', /JSON/],
      ];
      for (const [p, why] of cases) {
        const r = await clientAuth(t, { client_id: `${docs.base}${p}` });
        assert.equal(r.status, 401, `${p}: ${r.text}`);
        assert.equal(r.json.error, 'invalid_client', p);
        assert.match(r.json.error_description, why, `${p}: ${r.text}`);
      }
      // a failure is remembered: no second fetch
      const before = docs.hits('/big');
      const r = await clientAuth(t, { client_id: `${docs.base}/big` });
      assert.equal(r.status, 401);
      assert.equal(docs.hits('/big'), before);
      // URL forms refused before any fetch
      for (const u of [`${docs.base}/`, `${docs.base}/a#frag`, `${docs.base}/a/../b`, `http://user@127.0.0.1:1/x`]) {
        const x = await clientAuth(t, { client_id: u });
        assert.equal(x.status, 401, `${u}: ${x.text}`);
      }
    });

    it('a server that never answers: refused within oauth_cimd_timeout, then remembered', async () => {
      const t0 = Date.now();
      let r = await clientAuth(t, { client_id: `${docs.base}/slow` });
      const ms = Date.now() - t0;
      assert.equal(r.status, 401, r.text);
      assert.match(r.json.error_description, /timeout/);
      assert.ok(ms < 8000, `answered in ${ms} ms`);
      r = await clientAuth(t, { client_id: `${docs.base}/slow` });
      assert.equal(r.status, 401);
      assert.equal(docs.hits('/slow'), 1);
    });

    it('metrics and events of the fetches', async () => {
      const m = await scrape(t);
      assert.ok(metric(m, 'tokend_oauth_cimd_fetches_total', { result: 'ok' }) >= 2);
      assert.ok(metric(m, 'tokend_oauth_cimd_fetches_total', { result: 'refused' }) >= 5);
      assert.ok(metric(m, 'tokend_oauth_cimd_fetches_total', { result: 'failed' }) >= 2);
      const evs = await allEvents(t, '?kind=oauth');
      assert.ok(evs.some((e) => e.action === 'metadata_fetch' && e.outcome === 'failed'));
      assert.ok(evs.some((e) => e.action === 'metadata_fetch' && e.outcome === 'denied'));
    });
  });

  describe(`client ID metadata documents without the override (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t, off, docs;
    before(async () => {
      docs = await startDocs();
      t = await startTokend({ backend, args: ['--oauth-cimd-timeout', '2'] });
      off = await startTokend({ backend, args: ['--oauth-cimd', 'false'] });
    });
    after(async () => {
      if (t) await stopAndScan(t);
      if (off) await stopAndScan(off);
      if (docs) await docs.close();
    });

    it('http is refused; https to loopback or 169.254.169.254 is refused by public_only (SSRF)', async () => {
      let r = await clientAuth(t, { client_id: `${docs.base}/good` });
      assert.equal(r.status, 401, r.text);
      assert.match(r.json.error_description, /https/);
      const port = new URL(docs.base).port;
      for (const u of [`https://127.0.0.1:${port}/good`, 'https://169.254.169.254/latest/meta-data', 'https://[::1]/x', 'https://10.0.0.1/x']) {
        r = await clientAuth(t, { client_id: u });
        assert.equal(r.status, 401, `${u}: ${r.text}`);
        assert.match(r.json.error_description, /forbidden_address|connect_failed/, `${u}: ${r.text}`);
      }
      assert.equal(docs.hits('/good'), 0);
    });

    it('oauth_cimd false: a URL client_id is unknown', async () => {
      const r = await clientAuth(off, { client_id: 'https://app.example.com/client.json' });
      assert.equal(r.status, 401);
      assert.match(r.json.error_description, /oauth_cimd/);
    });

    it('oauth_cimd_allow_loopback without --dev stops start-up', async () => {
      const r = await serveExpectingExit({ backend, dev: false, args: ['--oauth-cimd-allow-loopback'] });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /oauth_cimd_allow_loopback/);
    });
  });
}
