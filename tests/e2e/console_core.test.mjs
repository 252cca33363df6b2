// The console's core (issue 17): sign-in, the session cookie, CSRF, the
// page frame's headers, sign-out ending the session on the server, roles
// through the /v1 rules, idle expiry. Page contents are the pages' tests.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';

import { api, backends, startTokend, stopAndScan, storeSql, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { CookieJar, browserRequest } from './lib/oauthflow.mjs';
import { consoleSignIn, forgedIssued, textOf } from './lib/console.mjs';

for (const backend of backends()) {
  describe(`console core (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    after(async () => {
      if (t) await stopAndScan(t);
    });

    it('signs in with an operator token: a Strict, HttpOnly session cookie scoped to /console/; pages carry a strict CSP', async () => {
      t = await startTokend({ backend });
      const jar = new CookieJar();
      const c = await consoleSignIn(t, { jar });
      const raw = jar.cookies.get('tokend_console').raw;
      assert.match(raw, /^tokend_console=tkw_/);
      assert.match(raw, /HttpOnly/);
      assert.match(raw, /SameSite=Strict/);
      assert.match(raw, /Path=\/console\//);
      assert.doesNotMatch(raw, /Secure/, 'plain HTTP: no Secure');
      const pg = await c.get('/console/tokens');
      const csp = pg.headers['content-security-policy'];
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.equal(pg.headers['x-frame-options'], 'DENY');
      assert.equal(pg.headers['cache-control'], 'no-store');
      assert.match((await c.get('/console/node')).text, /<a href="\/console\/node" aria-current="page">/, 'the nav marks the current page');
      // the stored session is a keyed hash, never the cookie
      const cookie = raw.split(';')[0].split('=')[1];
      const rows = await storeSql(t, 'SELECT token_hash FROM console_sessions');
      assert.ok(rows.trim().length > 0);
      assert.ok(!rows.includes(cookie));
    });

    it('refuses a wrong token with one sentence, counted and recorded like the API', async () => {
      const jar = new CookieJar();
      const login = await browserRequest(new URL('/console/login', t.url).href, { jar });
      const csrf = /name="csrf" value="([^"]+)"/.exec(login.text)[1];
      const bad = await browserRequest(new URL('/console/login', t.url).href, {
        method: 'POST', jar, form: { csrf, token: 'tko_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000', next: '/console/node' },
      });
      assert.equal(bad.status, 401);
      assert.match(textOf(bad.text), /not accepted/);
      assert.ok(!jar.cookies.has('tokend_console'));
      // without the login form's CSRF value: refused before any lookup
      const nocsrf = await browserRequest(new URL('/console/login', t.url).href, { method: 'POST', form: { token: t.token } });
      assert.equal(nocsrf.status, 403);
    });

    it('a page without a session redirects to the sign-in page; a form without the CSRF field is refused and changes nothing', async () => {
      const anon = await browserRequest(new URL('/console/tokens', t.url).href);
      assert.equal(anon.status, 303);
      assert.match(anon.headers.location, /^\/console\/login\?why=signin&next=\/console\/tokens$/);
      const c = await consoleSignIn(t);
      const before = (await api(t, '/v1/operator-tokens')).json.tokens.length;
      const res = await c.postRaw('/console/tokens', { name: 'no-csrf', role: 'viewer' });
      assert.equal(res.status, 403);
      assert.match(textOf(res.text), /CSRF/);
      const wrong = await c.postRaw('/console/tokens', { name: 'wrong-csrf', role: 'viewer', csrf: 'x'.repeat(43) });
      assert.equal(wrong.status, 403);
      const cross = await c.postRaw('/console/tokens', { name: 'cross', role: 'viewer', csrf: await c.csrf() }, { headers: { origin: 'https://evil.example' } });
      assert.equal(cross.status, 403);
      assert.equal((await api(t, '/v1/operator-tokens')).json.tokens.length, before);
    });

    it('sign-out ends the session on the server: the old cookie is refused afterwards', async () => {
      const c = await consoleSignIn(t);
      const cookie = c.jar.header(new URL('/console/node', t.url));
      const pg = await c.get('/console/tokens');
      const out = await c.submit(pg, '/console/logout');
      assert.equal(out.status, 303);
      assert.match(out.headers.location, /why=signed_out/);
      const again = await browserRequest(new URL('/console/tokens', t.url).href, { headers: { cookie } });
      assert.equal(again.status, 303);
      assert.match(again.headers.location, /^\/console\/login\?why=signed_out/);
      const evs = (await api(t, '/v1/events?kind=operator&action=console_sign_out')).json.events;
      assert.ok(evs.length >= 1);
    });

    it('a revoked operator token ends its sessions; a viewer session cannot act (the /v1 role rule)', async () => {
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'viewer-1', role: 'viewer' } });
      assert.equal(v.status, 201);
      const c = await consoleSignIn(t, { token: v.json.token });
      assert.equal((await c.get('/console/tokens')).status !== 303, true);
      const res = await c.postRaw('/console/tokens', { name: 'by-viewer', role: 'viewer', csrf: await c.csrf() });
      assert.equal(res.status, 403);
      assert.equal((await api(t, '/v1/operator-tokens')).json.tokens.some((x) => x.name === 'by-viewer'), false);
      assert.equal((await api(t, `/v1/operator-tokens/${v.json.id}`, { method: 'DELETE' })).status, 200);
      const after = await c.get('/console/tokens');
      assert.equal(after.status, 303);
      assert.match(after.headers.location, /why=revoked/);
    });

    it('a session idle longer than console_idle_timeout is ended', async () => {
      const c = await consoleSignIn(t);
      const open = async () => Number((await storeSql(t, 'SELECT count(*) FROM console_sessions WHERE ended_at IS NULL')).trim());
      const before = await open();
      await storeSql(t, `UPDATE console_sessions SET last_seen_at = last_seen_at - ${3600 * 1000} WHERE ended_at IS NULL`);
      const pg = await c.get('/console/tokens');
      assert.equal(pg.status, 303);
      assert.match(pg.headers.location, /why=idle/);
      assert.equal(await open(), before - 1, 'the idle session is ended in the store');
    });

    it('forged session cookies cost a store read each only within the address budget: then 429 without a lookup', async () => {
      const n = await startTokend({ backend, args: ['--auth-fail-limit', '5'] });
      try {
        const statuses = [];
        for (let i = 0; i < 8; i++) {
          const r = await browserRequest(new URL('/console/node', n.url).href, { headers: { cookie: `tokend_console=${forgedIssued('tkw')}` } });
          statuses.push(r.status);
          if (r.status === 303) assert.match(r.headers.location, /why=unknown/);
        }
        assert.deepEqual(statuses.slice(0, 5), [303, 303, 303, 303, 303]);
        assert.equal(statuses[7], 429, statuses.join(' '));
      } finally {
        await stopAndScan(n);
      }
    });

    it('the sign-in page sends nobody elsewhere: next is a console path or the node page', async () => {
      const jar = new CookieJar();
      const login = await browserRequest(new URL('/console/login?next=https://evil.example/', t.url).href, { jar });
      assert.doesNotMatch(login.text, /evil\.example/);
      const csrf = /name="csrf" value="([^"]+)"/.exec(login.text)[1];
      for (const next of ['https://evil.example/', '//evil.example/x', '/console//evil', '/v1/sys/seal']) {
        const res = await browserRequest(new URL('/console/login', t.url).href, { method: 'POST', jar, form: { csrf, token: t.token, next } });
        assert.equal(res.status, 303);
        assert.equal(res.headers.location, '/console/node', next);
      }
    });
  });
}
