// The console's connections pages (issue 17): the list with its filters and
// paging, one connection's page (status, diagnosis, attempts timeline), the
// refresh and debug refresh forms (the masked exchange, no planted secret in
// the page), the connect link, tenant scoping, a viewer's session, and a
// label with markup shown as text. Against the fault-injecting fake upstream.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { api, backends, createTenant, request, startTokend, uniqueId, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { startFakeUpstream } from './lib/fakeupstream.mjs';
import { noteSecret, secretCore, seenSecrets, stopAndScan } from './lib/secrets.mjs';
import { byId, consoleSignIn, textOf } from './lib/console.mjs';

function secret(prefix) {
  const s = `${prefix}-${uniqueId('s').replace(/[^A-Za-z0-9]/g, '')}${Math.random().toString(36).slice(2)}`;
  noteSecret(s, { kind: 'upstream' });
  return s;
}

const iso = (msFromNow) => new Date(Date.now() + msFromNow).toISOString().replace(/\.\d+Z$/, 'Z');

/** The ids of table#connections' rows. */
function rowIds(html) {
  const table = byId(html, 'connections');
  assert.ok(table, 'table#connections is on the page');
  return [...table.matchAll(/<tr data-id="([^"]+)"/g)].map((m) => m[1]);
}

/** No secret the suite has seen (tokens planted upstream, tokens the fake
 * upstream handed out, operator tokens) is in a page's source. */
function assertNoSecretInPage(pg) {
  for (const s of seenSecrets()) assert.ok(!pg.text.includes(secretCore(s)), `a secret (${s.slice(0, 6)}…) in ${pg.url}`);
}

for (const backend of backends()) {
  describe(`console connections (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let up;
    let c; // the root operator's console session
    let viewer;

    before(async () => {
      up = await startFakeUpstream();
      t = await startTokend({ backend, args: ['--refresh-timeout', '10', '--refresh-concurrency', '0'] });
      c = await consoleSignIn(t);
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'conn-viewer', role: 'viewer' } });
      assert.equal(v.status, 201, v.text);
      viewer = v.json.token;
    });
    after(async () => {
      if (t) await stopAndScan(t);
      await up?.close();
    });

    async function setup({ behaviour = { kind: 'ok', rotate: true, expiresIn: 3600 }, label, token = t.token, authorize = true } = {}) {
      const name = uniqueId('cc').replace(/[^A-Za-z0-9]/g, '');
      const clientId = `cid-${name}`;
      const clientSecret = secret('cs');
      const refreshToken = secret('rt0');
      const accessToken = secret('at0');
      const ep = up.endpoint(name, { clientId, clientSecret, auth: 'post', refreshToken });
      ep.behave(behaviour);
      const a = await request(t, '/v1/provider-apps', {
        method: 'POST',
        token,
        json: {
          provider: 'generic-oauth2', name, client_id: clientId, client_secret: clientSecret, scopes: ['read'], token_url: ep.url,
          client_auth: 'client_secret_post', ...(authorize ? { authorize_url: ep.url.replace(/\/token$/, '/authorize') } : {}),
        },
      });
      assert.equal(a.status, 201, a.text);
      const conn = await request(t, '/v1/connections', {
        method: 'POST',
        token,
        json: { app_id: a.json.id, label: label ?? `conn ${name}`, access_token: accessToken, refresh_token: refreshToken, expires_at: iso(3600 * 1000), scopes: ['read'] },
      });
      assert.equal(conn.status, 201, conn.text);
      return { ep, app: a.json, conn: conn.json, accessToken, refreshToken, clientSecret };
    }

    it('lists connections; the needs_reconnect filter shows only those; a rejected refresh token shows needs_reconnect and its diagnosis sentence', async () => {
      const good = await setup();
      const bad = await setup({ behaviour: { kind: 'invalid_grant' } });
      const r = await request(t, `/v1/connections/${bad.conn.id}/refresh`, { method: 'POST', token: t.token, noteSecrets: false });
      assert.equal(r.status, 409, r.text);

      const all = await c.get('/console/connections');
      assert.equal(all.status, 200, all.text);
      assert.ok(all.text.length < 100 * 1024);
      const ids = rowIds(all.text);
      assert.ok(ids.includes(good.conn.id) && ids.includes(bad.conn.id), ids.join(','));
      const badRow = new RegExp(`<tr data-id="${bad.conn.id}">[\\s\\S]*?</tr>`).exec(all.text)[0];
      assert.match(badRow, /class="badge b-needs_reconnect">needs_reconnect</);
      assert.match(textOf(badRow), new RegExp(`conn ${bad.app.name}`));
      assert.match(badRow, new RegExp(`href="/console/connections/${bad.conn.id}"`));
      assert.match(textOf(badRow), /invalid_grant/, 'the last error is on the row');
      assert.ok(byId(all.text, 'conn-filters'), 'form#conn-filters');
      assert.match(all.text, /href="\/console\/connections\?status=needs_reconnect"/, 'the quick link');
      assertNoSecretInPage(all);

      const nr = await c.get('/console/connections?status=needs_reconnect');
      assert.equal(nr.status, 200, nr.text);
      const nrIds = rowIds(nr.text);
      assert.ok(nrIds.includes(bad.conn.id));
      assert.ok(!nrIds.includes(good.conn.id));
      const viaApi = (await api(t, '/v1/connections?status=needs_reconnect&limit=50')).json.connections.map((x) => x.id);
      assert.deepEqual(nrIds, viaApi, 'the page shows what the API answers');
      assert.match(byId(nr.text, 'conn-filters'), /<option value="needs_reconnect" selected>/);
      // the filter form's fields, as a browser sends them (empty app_id = any)
      const byApp = await c.get(`/console/connections?status=&app_id=${good.app.id}`);
      assert.deepEqual(rowIds(byApp.text), [good.conn.id]);
      // a bad filter is the API's 400, as a page
      const wrong = await c.get('/console/connections?status=bogus');
      assert.equal(wrong.status, 400);
      assert.match(textOf(wrong.text), /status must be one of/);

      const pg = await c.get(`/console/connections/${bad.conn.id}`);
      assert.equal(pg.status, 200, pg.text);
      assert.match(byId(pg.text, 'status'), /needs_reconnect/);
      assert.match(textOf(byId(pg.text, 'diagnosis')), /refresh token rejected \(invalid_grant\) at \d\d:\d\d: reconnect needed/);
      const tl = byId(pg.text, 'timeline');
      assert.ok(tl, '#timeline');
      assert.equal([...tl.matchAll(/<span class="fail" title="[^"]*failed[^"]*">/g)].length, 1, tl);
      assert.match(textOf(byId(pg.text, 'attempts')), /manual failed/);
      assert.ok(byId(pg.text, 'details').includes('<dl class="kv"'), 'dl.kv');
      assertNoSecretInPage(pg);
    });

    it('the refresh button on a healthy connection shows success; the debug refresh shows the masked exchange without any planted secret', async () => {
      const s = await setup();
      const pg = await c.get(`/console/connections/${s.conn.id}`);
      assert.equal(pg.status, 200, pg.text);
      for (const id of ['refresh', 'debug-refresh', 'connect']) assert.match(pg.text, new RegExp(`<form id="${id}" method="post"`), id);
      assert.match(textOf(byId(pg.text, 'diagnosis')), /never refreshed yet/);

      const res = await c.submit(pg, `/console/connections/${s.conn.id}/refresh`);
      assert.equal(res.status, 200, res.text);
      assert.match(byId(res.text, 'outcome'), /b-ok">ok</);
      assert.match(textOf(byId(res.text, 'refresh-message')), /^Refreshed: the access token is valid until .*rotated the refresh token\.$/);
      assert.equal(byId(res.text, 'exchange'), null, 'no exchange without debug');
      assert.match(res.text, new RegExp(`id="back" href="/console/connections/${s.conn.id}"`));
      assert.match(res.text, /<nav>/, 'the result page is a console page with its navigation');
      assert.equal(s.ep.refreshes, 1);
      const firstAccess = s.ep.lastAccessToken;

      const dbg = await c.submit(pg, `/console/connections/${s.conn.id}/refresh`, { debug: '1' });
      assert.equal(dbg.status, 200, dbg.text);
      assert.match(byId(dbg.text, 'outcome'), /b-ok">ok</);
      const ex = byId(dbg.text, 'exchange');
      assert.ok(ex, 'pre#exchange');
      assert.ok(ex.startsWith('<pre id="exchange">'));
      const exText = textOf(ex);
      assert.match(exText, /grant_type=refresh_token/);
      assert.match(exText, /"status": 200/);
      assert.match(exText, /\*\*\*/, 'masked values');
      assert.equal(s.ep.refreshes, 2);
      for (const v of [s.accessToken, s.refreshToken, s.clientSecret, firstAccess, s.ep.lastAccessToken, s.ep.refreshToken])
        assert.ok(!dbg.text.includes(v), 'no token or client secret in the debug page');
      assertNoSecretInPage(dbg);
      assertNoSecretInPage(res);

      const after = await c.get(`/console/connections/${s.conn.id}`);
      assert.equal([...byId(after.text, 'timeline').matchAll(/<span class="ok" title=/g)].length, 2);
      assert.match(textOf(byId(after.text, 'attempts')), /debug ok/);
      assert.match(textOf(byId(after.text, 'diagnosis')), /^Diagnosis ok: token valid until/);
      assertNoSecretInPage(after);

      // a failing debug refresh: the failure and its exchange
      s.ep.behave({ kind: 'status', status: 503, body: '<html>down</html>', contentType: 'text/html' });
      const down = await c.submit(pg, `/console/connections/${s.conn.id}/refresh`, { debug: '1' });
      assert.equal(down.status, 200, down.text);
      assert.match(byId(down.text, 'outcome'), /b-error">error</);
      assert.match(textOf(byId(down.text, 'exchange')), /"status": 503/);
      assertNoSecretInPage(down);
    });

    it('the connect button gives the app\'s authorization link; an app without one is the API\'s 409 as a page', async () => {
      const s = await setup();
      const pg = await c.get(`/console/connections/${s.conn.id}`);
      const res = await c.submit(pg, `/console/connections/${s.conn.id}/connect`);
      assert.equal(res.status, 200, res.text);
      const a = byId(res.text, 'connect-link');
      assert.ok(a, 'a#connect-link');
      const href = /href="([^"]+)"/.exec(a)[1].replace(/&amp;/g, '&');
      const u = new URL(href);
      assert.equal(`${u.origin}${u.pathname}`, s.ep.url.replace(/\/token$/, '/authorize'));
      assert.equal(u.searchParams.get('client_id'), s.ep.clientId);
      assert.equal(u.searchParams.get('response_type'), 'code');
      assert.ok(u.searchParams.get('state'));
      assert.match(res.text, /\/connect\/callback/, 'the redirect URI to register');
      const ev = (await api(t, `/v1/events?kind=connect&action=start&subject=${s.app.id}`)).json.events;
      assert.equal(ev.length, 1, 'the start is the API\'s, with its event');

      const n = await setup({ authorize: false });
      const pg2 = await c.get(`/console/connections/${n.conn.id}`);
      const res2 = await c.submit(pg2, `/console/connections/${n.conn.id}/connect`);
      assert.equal(res2.status, 409, res2.text);
      assert.match(res2.text, /data-error="no_authorize_url"/);
      assert.equal(byId(res2.text, 'connect-link'), null);
    });

    it('another tenant\'s connection is a 404 page, for its page and its forms; the list pages by next_cursor', async () => {
      const mine = await setup();
      const other = await createTenant(t);
      const oc = await consoleSignIn(t, { token: other.token });
      const p404 = await oc.get(`/console/connections/${mine.conn.id}`);
      assert.equal(p404.status, 404, p404.text);
      assert.match(textOf(p404.text), /Not found/);
      assert.ok(!p404.text.includes(mine.app.name));
      const csrf = await oc.csrf();
      const before = mine.ep.refreshes;
      const r404 = await oc.postRaw(`/console/connections/${mine.conn.id}/refresh`, { csrf, debug: '1' });
      assert.equal(r404.status, 404, r404.text);
      assert.match(r404.text, /data-error="not_found"/);
      assert.equal((await oc.postRaw(`/console/connections/${mine.conn.id}/connect`, { csrf })).status, 404);
      assert.equal(mine.ep.refreshes, before, 'nothing was sent upstream');
      assert.equal((await oc.get('/console/connections/not-a-uuid')).status, 404);
      assert.ok(!rowIds((await oc.get('/console/connections')).text).includes(mine.conn.id));

      // 51 connections in the other tenant: 50 on the first page, then one
      const first = await setup({ token: other.token });
      for (let i = 1; i < 51; i++) {
        const x = await request(t, '/v1/connections', {
          method: 'POST',
          token: other.token,
          json: { app_id: first.app.id, label: `bulk ${i}`, access_token: secret('at'), refresh_token: secret('rt'), expires_at: iso(3600 * 1000) },
        });
        assert.equal(x.status, 201, x.text);
      }
      const p1 = await oc.get('/console/connections');
      assert.equal(p1.status, 200);
      assert.ok(p1.text.length < 100 * 1024, `${p1.text.length} bytes`);
      const ids1 = rowIds(p1.text);
      assert.equal(ids1.length, 50);
      const next = /<a id="next-page" rel="next" href="([^"]+)"/.exec(p1.text);
      assert.ok(next, 'a next page link');
      const p2 = await oc.get(next[1].replace(/&amp;/g, '&'));
      assert.equal(p2.status, 200, p2.text);
      const ids2 = rowIds(p2.text);
      assert.equal(ids2.length, 1);
      assert.ok(!ids1.includes(ids2[0]));
      assert.equal(byId(p2.text, 'next-page'), null);
    });

    it('a viewer sees no refresh, debug or connect button, and a viewer\'s POST is 403 and refreshes nothing', async () => {
      const s = await setup();
      const vc = await consoleSignIn(t, { token: viewer });
      const pg = await vc.get(`/console/connections/${s.conn.id}`);
      assert.equal(pg.status, 200, pg.text);
      assert.ok(byId(pg.text, 'diagnosis'));
      for (const id of ['refresh', 'debug-refresh', 'connect']) assert.equal(byId(pg.text, id), null, id);
      assert.equal(pg.forms.filter((f) => new URL(f.action).pathname.startsWith('/console/connections/')).length, 0);
      const csrf = await vc.csrf();
      for (const [action, fields] of [['refresh', {}], ['refresh', { debug: '1' }], ['connect', {}]]) {
        const res = await vc.postRaw(`/console/connections/${s.conn.id}/${action}`, { csrf, ...fields });
        assert.equal(res.status, 403, `${action}: ${res.text}`);
      }
      assert.equal(s.ep.refreshes, 0);
      assert.equal((await api(t, `/v1/events?kind=refresh&subject=${s.conn.id}`)).json.events.length, 0);
      assertNoSecretInPage(pg);
    });

    it('a label with markup is shown as text on the list, the page and the result pages', async () => {
      const label = `<script>alert("x")</script><img src=x onerror=alert(1)> ${uniqueId('l')}`;
      const s = await setup({ label });
      const list = await c.get('/console/connections');
      const pg = await c.get(`/console/connections/${s.conn.id}`);
      const res = await c.submit(pg, `/console/connections/${s.conn.id}/connect`);
      assert.equal(res.status, 200, res.text);
      for (const p of [list, pg, res]) {
        assert.ok(!p.text.includes('<script>alert'), p.url);
        assert.ok(!p.text.includes('<img src=x'), p.url);
        assert.ok(p.text.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'), p.url);
        assert.equal((p.text.match(/<script\b/g) || []).length, 1, 'only the console\'s own script tag');
      }
      assert.ok(textOf(pg.text).includes(label), 'the label reads as written');
    });
  });
}
