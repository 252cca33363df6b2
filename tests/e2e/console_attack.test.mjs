// Attacks on the admin console (issue 17), each a finding turned into a
// test: CSRF of the pre-session forms, the route walk of every console form,
// redirects and headers, page limits, secrets. Both backends.
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';

import { api, backends, createTenant, request, startTokend, stopAndScan, storeSql, waitFor, withTimeout, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { CookieJar, browserRequest } from './lib/oauthflow.mjs';
import { byId, consoleSignIn as signInOnly, forgedIssued, textOf } from './lib/console.mjs';
import { noteSecret } from './lib/secrets.mjs';

const PLANTED = 'A'.repeat(43); // a pre-session CSRF value another page chose

/** Sign in, and have the suite's secret scan (stopAndScan: logs, store
 * dump, events, data dir) look for the session cookie and its CSRF value. */
async function consoleSignIn(inst, opts) {
  const c = await signInOnly(inst, opts);
  noteSecret(c.jar.get('tokend_console').value, { kind: 'session' });
  noteSecret(await c.csrf(), { kind: 'csrf' });
  return c;
}

/** Fill a console route pattern's {params} with an id-like value. */
function fill(pattern, id) {
  return pattern.replace(/\{[a-z_]+\}/g, id);
}

/** Hold a lock on the store from another process until release(): sqlite3
 * BEGIN EXCLUSIVE, or a PostgreSQL session locking the console's tables
 * (as attack.test.mjs does for operator_tokens). */
async function holdLock(t) {
  const [cmd, args, begin] =
    t.backend === 'postgres'
      ? ['psql', [t.store, '-X', '-q', '-At'], "BEGIN; LOCK TABLE console_sessions, operator_tokens IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n"]
      : ['sqlite3', [path.join(t.dataDir, 'tokend.db')], "BEGIN EXCLUSIVE; SELECT 'locked';\n"];
  const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  const exited = new Promise((resolve) => p.once('exit', resolve));
  p.stdin.write(begin);
  await waitFor(() => out.includes('locked'), { timeoutMs: 15000, message: `${cmd} to hold the lock` });
  return {
    async release() {
      p.stdin.end('COMMIT;\n');
      await withTimeout(exited, 15000, `${cmd} to exit`);
    },
    kill() {
      if (p.exitCode === null) p.kill('SIGKILL');
    },
  };
}

for (const backend of backends()) {
  describe(`console attack (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    after(async () => {
      if (t) await stopAndScan(t);
    });

    it('sign-in CSRF: a planted pre-session cookie and a post from another site (Origin null, Sec-Fetch-Site) make no session', async () => {
      t = await startTokend({ backend });
      const url = new URL('/console/login', t.url).href;
      const planted = { cookie: `tokend_console_csrf=${PLANTED}` };
      // a page on another port of this host (same-site) that hides its
      // origin (no-referrer): Origin null, Sec-Fetch-Site same-site
      for (const site of ['same-site', 'cross-site']) {
        const res = await browserRequest(url, {
          method: 'POST',
          headers: { ...planted, origin: 'null', 'sec-fetch-site': site },
          form: { csrf: PLANTED, token: t.token, next: '/console/node' },
        });
        assert.equal(res.status, 403, `${site}: ${res.status}`);
        assert.ok(!String(res.headers['set-cookie'] || '').includes('tokend_console=tkw_'), site);
        assert.match(textOf(res.text), /another site/);
      }
      // the console's own form (same origin; Origin null under no-referrer) signs in
      const ok = await browserRequest(url, {
        method: 'POST',
        headers: { ...planted, origin: 'null', 'sec-fetch-site': 'same-origin' },
        form: { csrf: PLANTED, token: t.token, next: '/console/node' },
      });
      assert.equal(ok.status, 303, ok.text);
      // a session form posted from another origin is refused the same way
      const c = await consoleSignIn(t);
      const before = (await api(t, '/v1/operator-tokens')).json.tokens.length;
      const res = await c.postRaw('/console/tokens', { name: 'x-site', role: 'viewer', csrf: await c.csrf() }, { headers: { origin: 'null', 'sec-fetch-site': 'same-site' } });
      assert.equal(res.status, 403);
      assert.equal((await api(t, '/v1/operator-tokens')).json.tokens.length, before);
    });

    it('next and the sign-in redirect: no open redirect, no header injection (CR/LF, encoded slashes, backslashes, very long)', async () => {
      const jar = new CookieJar();
      const login = await browserRequest(new URL('/console/login', t.url).href, { jar });
      const csrf = /name="csrf" value="([^"]+)"/.exec(login.text)[1];
      const nexts = ['/console/node\r\nSet-Cookie: x=1', '/console/\\evil.example', '/console/%2F%2Fevil.example', '/console/..%2F..%2Fv1', '/\\evil.example',
        '/console/' + 'a'.repeat(5000), 'javascript:alert(1)', ' /console/node', '/console/node\u2028'];
      for (const next of nexts) {
        const res = await browserRequest(new URL('/console/login', t.url).href, { method: 'POST', jar, form: { csrf, token: t.token, next } });
        assert.equal(res.status, 303, JSON.stringify(next));
        const loc = res.headers.location;
        assert.ok(loc === '/console/node' || (loc.startsWith('/console/') && !/[\\\s]/.test(loc) && !loc.startsWith('/console//')), `${JSON.stringify(next)} -> ${loc}`);
        assert.equal(res.headers['set-cookie'].some((c) => c.startsWith('x=')), false);
      }
      // a page asked for without a session: its path goes into next only when it is plain
      for (const p of ['/console/%0d%0aSet-Cookie:%20x=1', '/console/clients/a%0d%0ab', '/console/clients/%5C%5Cevil']) {
        const res = await browserRequest(new URL(p, t.url).href);
        assert.ok([303, 404].includes(res.status), `${p}: ${res.status}`);
        if (res.status === 303) assert.match(res.headers.location, /^\/console\/login\?why=signin&next=\/console\/[A-Za-z0-9%/._~-]*$/, p);
        assert.ok(!String(res.headers['set-cookie'] || '').includes('x=1'), p);
      }
    });

    it('an address that is no console page, a form route opened with GET and a bad query value are pages with one sentence, not JSON or a 500', async () => {
      const c = await consoleSignIn(t);
      for (const [p, re] of [
        ['/console/nope', /no console page at this address/],
        ['/console/connections/x/y/z', /no console page at this address/],
        ['/console/logout', /Sign out.*button/],
        ['/console/tokens/abc/revoke', /takes a form sent by a button/],
      ]) {
        const res = await c.get(p);
        assert.equal(res.status, 404, p);
        assert.match(res.headers['content-type'], /^text\/html/, p);
        assert.match(textOf(res.text), re, p);
        assert.match(res.headers['content-security-policy'], /default-src 'none'/, p);
      }
      const post = await c.postRaw('/console/nope', { csrf: await c.csrf() });
      assert.equal(post.status, 404);
      assert.match(post.headers['content-type'], /^text\/html/);
      // a query value that is not UTF-8 text: the visitor's mistake (400), not a fault
      for (const p of ['/console/clients?cursor=%ff%00', '/console/agents?cursor=%ff', '/console/connections?cursor=%c3']) {
        const res = await c.get(p);
        assert.ok(res.status === 400, `${p}: ${res.status} ${textOf(res.text).slice(0, 200)}`);
        assert.match(res.headers['content-type'], /^text\/html/, p);
      }
      // the API's own 404 for /v1 stays JSON
      assert.match((await api(t, '/v1/nope')).headers['content-type'], /json/);
    });

    it('the route walk: every console form refuses a post without the CSRF field, a viewer, and another tenant\'s admin; nothing changes', async () => {
      const routes = (await api(t, '/v1/sys/routes')).json.routes;
      const forms = routes.filter((r) => r.method === 'POST' && r.principals.includes('session'));
      const pages = routes.filter((r) => r.method === 'GET' && r.principals.includes('session'));
      assert.ok(forms.length >= 10, `${forms.length} console forms`);
      const cl = await api(t, '/v1/clients', { method: 'POST', json: { name: 'walked' } });
      assert.equal(cl.status, 201, cl.text);
      const ct = await api(t, `/v1/clients/${cl.json.id}/tokens`, { method: 'POST', json: { name: 'walked-token' } });
      assert.equal(ct.status, 201, ct.text);
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'walk-viewer', role: 'viewer' } });
      const other = await createTenant(t);
      const admin = await consoleSignIn(t);
      const viewer = await consoleSignIn(t, { token: v.json.token });
      const stranger = await consoleSignIn(t, { token: other.token });
      const snapshot = async () => JSON.stringify([
        (await api(t, '/v1/operator-tokens')).json.tokens.map((x) => [x.id, x.revoked_at || x.status || '']),
        (await api(t, `/v1/clients/${cl.json.id}`)).json.status,
        (await api(t, `/v1/clients/${cl.json.id}/tokens`)).json,
        (await api(t, '/v1/tenants')).json.tenants?.length,
        (await api(t, '/v1/sys/seal-status')).json.sealed,
      ]);
      const before = await snapshot();
      const fillIds = (p) => p.replace('{token_id}', ct.json.id).replace('{id}', p.includes('/tokens/') && !p.includes('/clients/') ? v.json.id : cl.json.id);
      const fields = { name: 'walk', role: 'viewer', status: 'disabled', grace: '0', debug: '1' };
      for (const rt of forms) {
        const p = fillIds(rt.path);
        const what = `POST ${rt.path}`;
        if (rt.path === '/console/unseal' || rt.role === 'public') continue;
        const none = await admin.postRaw(p, fields);
        assert.equal(none.status, 403, `${what} without csrf: ${none.status}`);
        const foreign = await admin.postRaw(p, { ...fields, csrf: await viewer.csrf() });
        assert.equal(foreign.status, 403, `${what} with another session's csrf: ${foreign.status}`);
        if (rt.path === '/console/logout') continue;
        const asViewer = await viewer.postRaw(p, { ...fields, csrf: await viewer.csrf() });
        assert.equal(asViewer.status, 403, `${what} as a viewer: ${asViewer.status}`);
        assert.match(textOf(asViewer.text), /Nothing was done\. To do this, sign in with an operator token of that role/, what);
        if (!rt.path.includes('{') && rt.role !== 'node_admin') continue; // acts on its own tenant
        const asStranger = await stranger.postRaw(p, { ...fields, csrf: await stranger.csrf() });
        assert.ok([403, 404].includes(asStranger.status), `${what} as another tenant's admin: ${asStranger.status}`);
        assert.match(asStranger.headers['content-type'], /^text\/html/, what);
      }
      assert.equal(await snapshot(), before, 'no form changed anything');
      for (const rt of pages.filter((r) => r.path.includes('{'))) {
        const res = await stranger.get(fillIds(rt.path));
        assert.equal(res.status, 404, `GET ${rt.path} as another tenant's admin: ${res.status}`);
        assert.match(textOf(res.text), /Not found.*belongs to another tenant/);
        assert.doesNotMatch(res.text, /walked/, 'nothing of the other tenant');
      }
      const tenants = await stranger.get('/console/tenants');
      assert.equal(tenants.status, 403, 'node-admin page');
    });

    it('a page and a form while the store is locked answer within a bounded time with one clear sentence, not a hang', async (tc) => {
      const c = await consoleSignIn(t);
      const pg = await c.get('/console/tokens');
      // the session's last_seen_at is due for a write: the page must write while locked
      await storeSql(t, `UPDATE console_sessions SET last_seen_at = last_seen_at - 60000 WHERE ended_at IS NULL`);
      const lock = await holdLock(t);
      tc.after(() => lock.kill());
      try {
        for (const [what, go] of [
          ['GET /console/tokens', () => c.get('/console/tokens')],
          ['POST /console/tokens', () => c.submit(pg, '/console/tokens', { name: 'while-locked', role: 'viewer' })],
        ]) {
          const t0 = Date.now();
          const res = await withTimeout(go(), 30000, `${what} answers`);
          const ms = Date.now() - t0;
          if (process.env.ATTACK_DEBUG) console.log(what, res.status, ms, textOf(res.text).slice(0, 400));
          assert.ok(ms < 25000, `${what}: ${ms} ms`);
          if (res.status !== 200) {
            assert.ok([503, 429].includes(res.status), `${what}: ${res.status} ${textOf(res.text).slice(0, 300)}`);
            assert.match(res.headers['content-type'], /^text\/html/, what);
            assert.match(textOf(res.text), /try again/i, what);
          }
        }
      } finally {
        await lock.release();
      }
      assert.equal((await c.get('/console/tokens')).status, 200, 'the session still works after the lock');
    });

    it('a session cookie planted beside the real one (narrower path, parent domain) is refused with a sentence that says to clear cookies, not a sign-in loop', async () => {
      const mine = await consoleSignIn(t);
      const other = await consoleSignIn(t); // stands for the attacker's own session
      const value = (c) => c.jar.get('tokend_console').value;
      const both = `tokend_console=${value(other)}; tokend_console=${value(mine)}`;
      const res = await browserRequest(new URL('/console/tokens', t.url).href, { headers: { cookie: both } });
      assert.equal(res.status, 303);
      assert.match(res.headers.location, /^\/console\/login\?why=cookies/);
      const login = await browserRequest(new URL(res.headers.location, t.url).href, { headers: { cookie: both } });
      assert.match(textOf(login.text), /clear this site's cookies/);
      // a planted pre-session CSRF cookie beside the browser's: the same sentence on the refusal
      const jar = new CookieJar();
      const pg = await browserRequest(new URL('/console/login', t.url).href, { jar });
      const csrf = /name="csrf" value="([^"]+)"/.exec(pg.text)[1];
      const bad = await browserRequest(new URL('/console/login', t.url).href, {
        method: 'POST',
        headers: { cookie: `tokend_console_csrf=${PLANTED}; tokend_console_csrf=${csrf}` },
        form: { csrf, token: t.token, next: '/console/node' },
      });
      assert.equal(bad.status, 403);
      assert.match(textOf(bad.text), /clear this site's cookies/);
    });


    it('values with markup are text on every page: names, labels, metadata, agent hostnames, redirect URIs; no javascript: link', async () => {
      const EVIL = `<script>alert(1)</script>"'><img src=x onerror=alert(2)>`;
      const made = async (what, r) => {
        assert.ok(r.status === 201 || r.status === 200, `${what}: ${r.status} ${r.text}`);
        return r.json;
      };
      const cl = await made('client', await api(t, '/v1/clients', { method: 'POST', json: { name: EVIL, email: 'a@b.example', metadata: { team: EVIL } } }));
      const ct = await made('client token', await api(t, `/v1/clients/${cl.id}/tokens`, { method: 'POST', json: { name: EVIL } }));
      await made('agent', await request(t, '/v1/agents/register', { method: 'POST', token: ct.token, json: { logical_agent_id: 'evil-agent', hostname: 'host-1.example', version: '<script>alert(4)</script>"><img/src=x>' } }));
      await made('operator token', await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: EVIL, role: 'viewer' } }));
      const app = await made('provider app', await api(t, '/v1/provider-apps', {
        method: 'POST',
        json: { provider: 'generic-oauth2', name: 'evilapp', client_id: 'cid', client_secret: 'app-secret-not-shown-0001', scopes: ['read'], token_url: 'https://example.com/token', authorize_url: 'https://example.com/auth?x="><script>', client_auth: 'client_secret_post' },
      }));
      const conn = await made('connection', await api(t, '/v1/connections', { method: 'POST', json: { app_id: app.id, label: EVIL, access_token: 'at-evil-000000000000000', refresh_token: 'rt-evil-000000000000000', scopes: ['read'] } }));
      const oc = await made('oauth client', await api(t, '/v1/oauth/clients', { method: 'POST', json: { name: EVIL, redirect_uris: ['https://app.example.com/cb?q="><script>alert(3)</script>'] } }));
      const c = await consoleSignIn(t);
      const pages = ['/console/node', '/console/events', '/console/connections', `/console/connections/${conn.id}`, '/console/clients', `/console/clients/${cl.id}`,
        '/console/agents', '/console/oauth/clients', `/console/oauth/clients/${oc.id}`, '/console/oauth/flows', '/console/tokens', '/console/tenants'];
      let seen = 0;
      for (const p of pages) {
        const res = await c.get(p);
        assert.equal(res.status, 200, p);
        for (const re of [/<script>alert/i, /<img src=x/i, /<img\/src/i, /href="\s*javascript:/i, /onerror=alert\(2\)>/]) assert.doesNotMatch(res.text, re, p);
        if (textOf(res.text).includes(EVIL)) seen++;
      }
      assert.ok(seen >= 6, `the values are shown as text on ${seen} pages`);
      const pg = await c.get(`/console/connections/${conn.id}`);
      const link = await c.submit(pg, `/console/connections/${conn.id}/connect`);
      assert.equal(link.status, 200, link.text);
      assert.doesNotMatch(link.text, /<script>/);
      assert.match(textOf(link.text), /named "<script>alert\(1\)<\/script>/);
    });

    it('a list of long labels and errors full of characters HTML escapes stays under 100 KB and pages through every row once', async () => {
      const app = await api(t, '/v1/provider-apps', { method: 'POST', json: { provider: 'generic-oauth2', name: 'big-list', client_id: 'cid', client_secret: 'big-list-secret-0000001', scopes: ['read'], token_url: 'https://example.com/token', client_auth: 'client_secret_post' } });
      assert.equal(app.status, 201, app.text);
      const ids = new Set();
      for (let i = 0; i < 60; i++) {
        const r = await api(t, '/v1/connections', { method: 'POST', json: { app_id: app.json.id, label: '"'.repeat(120) + String(i).padStart(8, '0'), access_token: `at-big-0000000000${i}`, refresh_token: `rt-big-0000000000${i}`, scopes: ['read'] } });
        assert.equal(r.status, 201, r.text);
        ids.add(r.json.id);
      }
      // what a provider's error text can be: 320 bytes, all of them escaped
      const q = '"'.repeat(320);
      await storeSql(t, `UPDATE connections SET status = 'refresh_error', last_error_code = 'upstream_error', last_error = '${q.replace(/'/g, "''")}' WHERE app_id = '${app.json.id}'`);
      const c = await consoleSignIn(t);
      const seen = [];
      let url = `/console/connections?app_id=${app.json.id}`;
      for (let n = 0; url && n < 20; n++) {
        const pg = await c.get(url);
        assert.equal(pg.status, 200, `${url}: ${textOf(pg.text).slice(0, 200)}`);
        assert.ok(pg.text.length < 100 * 1024, `${url}: ${pg.text.length} bytes`);
        for (const m of pg.text.matchAll(/<tr data-id="([^"]+)"/g)) seen.push(m[1]);
        const next = /<a id="next-page" rel="next" href="([^"]+)"/.exec(pg.text);
        url = next ? next[1].replace(/&amp;/g, '&') : null;
      }
      assert.equal(seen.length, 60, `${seen.length} rows over the pages`);
      assert.deepEqual(new Set(seen), ids);
    });

    it('the agents list with the longest hostnames, ids and versions an agent may send stays under 100 KB and pages through every agent once', async () => {
      const cl = await api(t, '/v1/clients', { method: 'POST', json: { name: '"'.repeat(128), email: 'big@agents.example' } });
      assert.equal(cl.status, 201, cl.text);
      const ct = await api(t, `/v1/clients/${cl.json.id}/tokens`, { method: 'POST', json: { name: 'big-agents' } });
      const ids = new Set();
      for (let i = 0; i < 55; i++) {
        const r = await request(t, '/v1/agents/register', { method: 'POST', token: ct.json.token, json: { logical_agent_id: `agent-${'x'.repeat(110)}-${i}`, hostname: 'h'.repeat(250) + i, version: '"'.repeat(62) + i } });
        assert.ok(r.status < 300, r.text);
        ids.add(r.json.id ?? r.json.agent?.id);
      }
      const c = await consoleSignIn(t);
      const seen = [];
      let url = `/console/agents?client_id=${cl.json.id}`;
      for (let n = 0; url && n < 20; n++) {
        const pg = await c.get(url);
        assert.equal(pg.status, 200, `${url}: ${textOf(pg.text).slice(0, 200)}`);
        assert.ok(pg.text.length < 100 * 1024, `${url}: ${pg.text.length} bytes`);
        for (const m of pg.text.matchAll(/<tr id="([^"]+)" data-id=/g)) seen.push(m[1]);
        const next = /<a id="next-page" rel="next" href="([^"]+)"/.exec(pg.text);
        url = next ? next[1].replace(/&amp;/g, '&') : null;
      }
      assert.equal(seen.length, 55, `${seen.length} agents over the pages`);
      assert.equal(new Set(seen).size, 55);
    });

    it('the events page with long messages full of characters HTML escapes shows the newest lines that fit, under 100 KB, not a 500', async () => {
      const c = await consoleSignIn(t);
      // what an upstream's error text can make of a refresh event's message
      // (the events of this suite so far: more than a page of them)
      await storeSql(t, `UPDATE events SET message = '${'"'.repeat(320)}' WHERE kind <> 'operator'`);
      const pg = await c.get('/console/events');
      assert.equal(pg.status, 200, textOf(pg.text).slice(0, 300));
      assert.ok(pg.text.length < 100 * 1024, `${pg.text.length} bytes`);
      const lines = [...pg.text.matchAll(/<div class="line" data-id="[^"]+" data-seq="(\d+)"/g)].map((m) => Number(m[1]));
      assert.ok(lines.length >= 10, `${lines.length} lines`);
      const newest = (await api(t, '/v1/events?limit=1')).json.events[0].seq;
      assert.ok(lines.at(-1) >= newest - 5, 'the newest lines are the ones shown');
      assert.match(pg.text, /<section[^>]*id="chart"|id="chart"/, 'the chart is still there');
    });

    it('a connection whose 100 last attempts carry long escaped error messages still has its page (under 100 KB), not a 500', async () => {
      const app = await api(t, '/v1/provider-apps', { method: 'POST', json: { provider: 'generic-oauth2', name: 'down-upstream', client_id: 'cid', client_secret: 'down-upstream-secret-01', scopes: ['read'], token_url: 'https://127.0.0.1:1/token', client_auth: 'client_secret_post' } });
      assert.equal(app.status, 201, app.text);
      const conn = await api(t, '/v1/connections', { method: 'POST', json: { app_id: app.json.id, label: '"'.repeat(128), access_token: 'at-down-000000000000000', refresh_token: 'rt-down-000000000000000', scopes: ['read'] } });
      assert.equal(conn.status, 201, conn.text);
      for (let i = 0; i < 105; i++) await api(t, `/v1/connections/${conn.json.id}/refresh`, { method: 'POST' });
      const q = '"'.repeat(320); // an upstream's error text, as long as a message keeps
      await storeSql(t, `UPDATE events SET message = '${q}' WHERE kind = 'refresh' AND subject_id = '${conn.json.id}'`);
      await storeSql(t, `UPDATE connections SET last_error = '${q}' WHERE id = '${conn.json.id}'`);
      const c = await consoleSignIn(t);
      const pg = await c.get(`/console/connections/${conn.json.id}`);
      assert.equal(pg.status, 200, textOf(pg.text).slice(0, 300));
      assert.ok(pg.text.length < 100 * 1024, `${pg.text.length} bytes`);
      assert.ok(byId(pg.text, 'diagnosis') && byId(pg.text, 'refresh'), 'the diagnosis and the buttons are there');
      assert.ok(textOf(pg.text).includes(q), 'the last error is shown whole');
    });

    it('sessions ended or expired more than a day ago are cleared at the next sign-in; live ones stay', async () => {
      const live = await consoleSignIn(t);
      const old = await consoleSignIn(t);
      await old.submit(await old.get('/console/tokens'), '/console/logout');
      const day = 24 * 3600 * 1000;
      await storeSql(t, `UPDATE console_sessions SET ended_at = ended_at - ${2 * day} WHERE ended_at IS NOT NULL`);
      const before = Number((await storeSql(t, 'SELECT count(*) FROM console_sessions WHERE ended_at IS NOT NULL')).trim());
      assert.ok(before >= 1);
      await consoleSignIn(t);
      assert.equal(Number((await storeSql(t, 'SELECT count(*) FROM console_sessions WHERE ended_at IS NOT NULL')).trim()), 0);
      assert.equal((await live.get('/console/tokens')).status, 200, 'a live session is kept');
    });

    it('a flood of failed sign-ins: 401 within the address budget, then 429 with one sentence and no further events', async () => {
      const n = await startTokend({ backend, args: ['--auth-fail-limit', '5'] });
      try {
        const jar = new CookieJar();
        const login = await browserRequest(new URL('/console/login', n.url).href, { jar });
        const csrf = /name="csrf" value="([^"]+)"/.exec(login.text)[1];
        const statuses = [];
        let last;
        for (let i = 0; i < 30; i++) {
          last = await browserRequest(new URL('/console/login', n.url).href, { method: 'POST', jar, form: { csrf, token: i % 2 ? forgedIssued('tko') : `garbage-${i}`, next: '/console/node' } });
          statuses.push(last.status);
        }
        assert.deepEqual(statuses.slice(0, 5), [401, 401, 401, 401, 401], statuses.join(' '));
        assert.ok(statuses.slice(6).every((s) => s === 429), statuses.join(' '));
        assert.ok(Number(last.headers['retry-after']) >= 1);
        assert.match(textOf(last.text), /too many failed authentications.*try again/);
        const evs = (await api(n, '/v1/events?kind=operator&action=authenticate&limit=100')).json.events;
        assert.ok(evs.length <= 7, `${evs.length} authenticate events for 30 failed sign-ins`);
      } finally {
        await stopAndScan(n);
      }
    });
  });

  describe(`console attack: event streams (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    after(async () => {
      if (t) await stopAndScan(t);
    });
    it('one session cannot take its tenant\'s event streams: at most 4, the next refused; others still get theirs; closed ones are given back', async () => {
      // a short idle timeout: heartbeats every second find closed streams fast
      t = await startTokend({ backend, args: ['--idle-timeout', '2'] });
      const open = (c) => new Promise((resolve, reject) => {
        const u = new URL('/console/events/stream', t.url);
        const req = http.get({ host: u.hostname, port: u.port, path: u.pathname, agent: false, headers: { cookie: c.jar.header(u), accept: 'text/event-stream' } }, (res) => {
          if (res.statusCode !== 200) res.resume();
          resolve({ status: res.statusCode, close: () => req.destroy() });
        });
        req.on('error', reject);
      });
      const one = await consoleSignIn(t);
      const two = await consoleSignIn(t);
      const held = [];
      try {
        for (let i = 0; i < 4; i++) {
          const s = await open(one);
          held.push(s);
          assert.equal(s.status, 200, `stream ${i + 1}`);
        }
        const fifth = await open(one);
        held.push(fifth);
        assert.equal(fifth.status, 503, 'the fifth stream of one session');
        const other = await open(two);
        held.push(other);
        assert.equal(other.status, 200, 'another session of the tenant still gets one');
      } finally {
        for (const s of held) s.close();
      }
      // the pump notices closed streams and gives them back
      await waitFor(async () => {
        const s = await open(one);
        s.close();
        return s.status === 200;
      }, { timeoutMs: 20000, message: 'a stream after closing the others' });
    });
  });

  describe(`console attack: sealed (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    after(async () => {
      if (t) await stopAndScan(t);
    });

    it('a sealed node sends every console address to the unseal page: pages, forms, the sign-in page, unknown addresses', async () => {
      t = await startTokend({ backend, dev: false });
      const init = await request(t, '/v1/sys/init', { method: 'POST', json: { shares: 1, threshold: 1 } });
      assert.equal(init.status, 200, init.text);
      t.token = init.json.root_token;
      const routes = (await api(t, '/v1/sys/routes')).json.routes.filter((r) => r.path.startsWith('/console/'));
      const c = await consoleSignIn(t);
      const csrf = await c.csrf();
      assert.equal((await api(t, '/v1/sys/seal', { method: 'POST' })).status, 200);
      const paths = routes.filter((r) => !r.sealed_ok).map((r) => [r.method, fill(r.path, 'x')]);
      paths.push(['GET', '/console/nope'], ['GET', '/console/login?next=/console/tokens'], ['POST', '/console/nope']);
      for (const [method, p] of paths) {
        for (const who of [c, null]) {
          const res = who
            ? method === 'GET' ? await who.get(p) : await who.postRaw(p, { csrf })
            : await browserRequest(new URL(p, t.url).href, method === 'GET' ? {} : { method, form: { csrf } });
          assert.equal(res.status, 303, `${method} ${p} (${who ? 'session' : 'anonymous'}): ${res.status}`);
          assert.equal(res.headers.location, '/console/unseal', `${method} ${p}`);
        }
      }
      for (const p of ['/console/', '/console']) assert.equal((await c.get(p)).headers.location, '/console/unseal', p);
      const u = await c.get('/console/unseal');
      assert.equal(u.status, 200);
      assert.match(textOf(u.text), /0 of 1/);
      // unsealed again (API): the console is back, the session too
      const share = init.json.shares[0];
      assert.equal((await request(t, '/v1/sys/unseal', { method: 'POST', json: { share } })).json.sealed, false);
      assert.equal((await c.get('/console/tokens')).status, 200);
    });
  });
}
