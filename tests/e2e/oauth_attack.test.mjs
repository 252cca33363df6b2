// oauth_attack.test.mjs: the OAuth server under attack (issue 15): hostile
// bytes and repeated parameters, reflected values in pages and redirects,
// cross-client and cross-tenant use of codes, refresh tokens, introspection
// and revocation, forged JWTs (alg none, HS256 with the public key, kid
// tricks, huge tokens), concurrent refreshes, trickled and pipelined
// requests, and the node staying responsive through all of it.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { noteSecret } from './lib/secrets.mjs';
import { copyFile } from 'node:fs/promises';
import { allEvents, api, backends, createPgDatabase, createTenant, freshDir, metric, request, scrape, storeSql, waitFor, startTokend, stopAndScan, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { authorizeInBrowser, createUser } from './lib/oauthflow.mjs';

const CB = 'https://app.example/cb';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const RATE = 40;
const FAST = ['--oauth-authorize-rate', String(RATE), '--users-argon2-memory-kib', '1024', '--users-argon2-iterations', '1'];

const form = (o) => new URLSearchParams(Object.entries(o).filter(([, v]) => v !== undefined)).toString();
const basic = (c) => `Basic ${Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret)}`).toString('base64')}`;
const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

function token(t, params, c, extraHeaders = {}) {
  const headers = { ...FORM, ...extraHeaders };
  const body = { ...params };
  if (c?.client_secret) headers.authorization = basic(c);
  else if (c) body.client_id = c.client_id;
  return request(t, '/oauth2/token', { method: 'POST', body: typeof params === 'string' ? params : form(body), headers });
}
function pkcePair() {
  const verifier = crypto.randomBytes(32).toString('base64url');
  return { verifier, challenge: crypto.createHash('sha256').update(verifier).digest('base64url') };
}
async function scope(t, name, token = t.token) {
  const r = await request(t, '/v1/oauth/scopes', { method: 'POST', token, json: { name, description: `the ${name} scope` } });
  assert.ok(r.status === 201 || r.status === 409, r.text);
}
async function client(t, spec, token = t.token) {
  const r = await request(t, '/v1/oauth/clients', { method: 'POST', token, json: { name: `c-${crypto.randomBytes(4).toString('hex')}`, ...spec } });
  assert.equal(r.status, 201, r.text);
  const b = r.json.client || r.json;
  const client_secret = r.json.client_secret ?? b.client_secret ?? null;
  if (client_secret) noteSecret(client_secret, { kind: 'oauth client secret' });
  return { id: b.id, client_id: b.client_id, client_secret };
}
const confSpec = {
  client_type: 'confidential',
  application_type: 'web',
  token_endpoint_auth_method: 'client_secret_basic',
  redirect_uris: [CB],
  grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
  scopes: ['notes:read'],
  default_scopes: ['notes:read'],
};
const pubSpec = {
  client_type: 'public',
  application_type: 'web',
  token_endpoint_auth_method: 'none',
  redirect_uris: [CB],
  grant_types: ['authorization_code', 'refresh_token'],
  scopes: ['notes:read'],
  default_scopes: ['notes:read'],
};

const PK = pkcePair();
async function codeFor(t, c, user, challenge = PK.challenge) {
  const q = { response_type: 'code', client_id: c.client_id, redirect_uri: CB, state: 'st', scope: 'notes:read' };
  if (challenge) Object.assign(q, { code_challenge: challenge, code_challenge_method: 'S256' });
  const { callback } = await authorizeInBrowser(`${t.url}/oauth2/authorize?${new URLSearchParams(q)}`, { redirectUri: CB, email: user.email, password: user.password });
  const code = callback.searchParams.get('code');
  assert.ok(code, String(callback));
  return code;
}

async function health(t) {
  const r = await request(t, '/health', { timeoutMs: 5000 });
  return r.status;
}

for (const backend of backends()) {
  describe(`OAuth server under attack (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let tenantB; // a second tenant's operator token
    let s;
    before(async () => {
      t = await startTokend({ backend, args: [...FAST] });
      await scope(t, 'notes:read');
      const user = await createUser(t);
      s = { user, conf: await client(t, confSpec), conf2: await client(t, confSpec), pub: await client(t, pubSpec) };
      tenantB = (await createTenant(t)).token;
      await scope(t, 'notes:read', tenantB);
      s.other = await client(t, confSpec, tenantB);
    });
    after(() => stopAndScan(t));



    async function newFlow() {
      const r = await request(t, `/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: s.pub.client_id, redirect_uri: CB, state: 's', code_challenge: PK.challenge, code_challenge_method: 'S256' })}`);
      assert.ok(r.headers.location, `${r.status} ${r.text}`);
      const flow = new URL(r.headers.location, t.url).searchParams.get('flow');
      assert.ok(flow, r.headers.location);
      return flow;
    }

    it('a flood of refused sign-ins leaves a bounded number of events (coalesced)', async () => {
      const flow = await newFlow();
      const N = 60;
      // no CSRF cookie or field: refused before any hash, each time
      for (let i = 0; i < N; i++) {
        const r = await request(t, '/oauth2/login', { method: 'POST', headers: FORM, body: form({ flow, email: 'a@example.com', password: 'wrong-password-1' }) });
        assert.equal(r.status, 403, r.text);
      }
      // a finished flow opened again and again
      const done = await newFlow();
      await storeSql(t, `${t.backend === 'postgres' ? '' : 'PRAGMA busy_timeout = 10000; '}UPDATE oauth_flows SET status = 'failed' WHERE id = '${done}'`);
      for (let i = 0; i < N; i++) {
        const r = await request(t, `/oauth2/login?flow=${done}`);
        assert.equal(r.status, 400, r.text);
      }
      await request(t, `/oauth2/login?flow=${done}`);
      const evs = await waitFor(async () => {
        const all = await allEvents(t, 'kind=oauth');
        const mine = all.filter((e) => e.subject_id === flow || e.subject_id === done);
        return mine.length > 0 ? mine : null;
      });
      const csrf = evs.filter((e) => e.subject_id === flow && /csrf/.test(JSON.stringify(e)));
      const inactive = evs.filter((e) => e.subject_id === done && /flow_not_active/.test(JSON.stringify(e)));
      assert.ok(csrf.length >= 1 && csrf.length <= 3, `${csrf.length} csrf events for ${N} refusals`);
      assert.ok(inactive.length >= 1 && inactive.length <= 3, `${inactive.length} flow_not_active events for ${N} page loads`);
    });

    it('authorization requests past oauth_authorize_rate from one address: 429 page, no flow row, one event', async () => {
      const n0 = Number((await storeSql(t, `${t.backend === 'postgres' ? '' : 'PRAGMA busy_timeout = 10000; '}SELECT count(*) FROM oauth_flows`)).trim().split('\n').pop());
      const statuses = [];
      for (let i = 0; i < RATE + 25; i++) {
        const r = await request(t, `/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: s.pub.client_id, redirect_uri: CB, state: 's', code_challenge: PK.challenge, code_challenge_method: 'S256' })}`, { from: '127.0.0.9' });
        statuses.push(r.status);
        if (r.status === 429) {
          assert.ok(!r.headers.location, r.headers.location);
          assert.ok(Number(r.headers['retry-after']) >= 1, JSON.stringify(r.headers));
          assert.match(r.headers['content-type'], /text\/html/);
        }
      }
      const limited = statuses.filter((x) => x === 429).length;
      assert.ok(limited >= 25, `429s: ${limited} of ${statuses.length}: ${statuses.join(',')}`);
      const n1 = Number((await storeSql(t, `${t.backend === 'postgres' ? '' : 'PRAGMA busy_timeout = 10000; '}SELECT count(*) FROM oauth_flows`)).trim().split('\n').pop());
      assert.ok(n1 - n0 <= RATE, `${n1 - n0} flow rows for ${statuses.length} requests (budget ${RATE})`);
      const ev = await waitFor(async () => {
        const all = (await allEvents(t, 'kind=oauth')).filter((e) => e.detail?.reason === 'rate_limited' && e.action === 'authorize_received');
        return all.length ? all : null;
      });
      assert.ok(ev.length <= 2, `${ev.length} rate_limited events`);
      assert.equal(await health(t), 200);
      // past the budget nothing else is done either: no metadata document
      // fetched (nor its client row made) for a URL client_id
      const doc = await request(t, `/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'https://cimd.example/never-fetched.json', redirect_uri: CB, state: 's', code_challenge: PK.challenge, code_challenge_method: 'S256' })}`, { from: '127.0.0.9' });
      assert.equal(doc.status, 429, doc.text);
      const rows = await storeSql(t, `${t.backend === 'postgres' ? '' : 'PRAGMA busy_timeout = 10000; '}SELECT count(*) FROM oauth_clients WHERE client_id LIKE 'https://cimd.example/%'`);
      assert.equal(Number(rows.trim().split('\n').pop()), 0);
      // another address is not limited
      const other = await request(t, `/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: s.pub.client_id, redirect_uri: CB, state: 's', code_challenge: PK.challenge, code_challenge_method: 'S256' })}`, { from: '127.0.0.10' });
      assert.equal(other.status, 303, other.text);
    });


    it('client authentication cannot be downgraded: a confidential client without its secret, the secret in two places, a public client with a secret', async () => {
      const code = await codeFor(t, s.conf, s.user);
      // as if public: only client_id in the body
      let r = await request(t, '/oauth2/token', { method: 'POST', headers: FORM, body: form({ grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: PK.verifier, client_id: s.conf.client_id }) });
      assert.equal(r.status, 401, r.text);
      assert.equal(r.json.error, 'invalid_client');
      // the code still works for its client afterwards? (a failed client auth must not burn it)
      r = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: PK.verifier }, s.conf);
      assert.equal(r.status, 200, `a refused client authentication burnt the code: ${r.text}`);
      // basic and post at once
      r = await request(t, '/oauth2/token', { method: 'POST', headers: { ...FORM, authorization: basic(s.conf) }, body: form({ grant_type: 'client_credentials', client_id: s.conf.client_id, client_secret: s.conf.client_secret }) });
      assert.equal(r.status, 400, r.text);
      // empty secret, Basic with a wrong scheme, malformed base64
      for (const auth of ['Basic ', 'Basic !!!!', `Basic ${Buffer.from(`${s.conf.client_id}:`).toString('base64')}`, `Bearer ${s.conf.client_secret}`, `basic ${Buffer.from(`${s.conf.client_id}`).toString('base64')}`]) {
        r = await request(t, '/oauth2/token', { method: 'POST', headers: { ...FORM, authorization: auth }, body: form({ grant_type: 'client_credentials' }) });
        assert.ok(r.status === 401 || r.status === 400, `${auth}: ${r.status} ${r.text}`);
        assert.notEqual(r.status, 200);
      }
      // a public client presenting a secret gets no client_credentials
      r = await request(t, '/oauth2/token', { method: 'POST', headers: FORM, body: form({ grant_type: 'client_credentials', client_id: s.pub.client_id }) });
      assert.notEqual(r.status, 200, r.text);
    });

    it('metadata-document client_ids at loopback, link-local and private addresses are refused without a fetch', async () => {
      for (const cid of ['https://169.254.169.254/latest/meta-data', 'https://127.0.0.1/cimd.json', 'https://localhost/cimd.json', 'https://[::1]/c.json', 'https://10.0.0.1/c.json', 'https://0x7f000001/c.json', 'https://2130706433/c.json', 'https://user@example.com/c.json', 'http://example.com/c.json', 'https://example.com:99999/c.json']) {
        const t0 = Date.now();
        const r = await request(t, `/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: cid, redirect_uri: CB, state: 's', code_challenge: PK.challenge, code_challenge_method: 'S256' })}`);
        assert.ok(!r.headers.location || !r.headers.location.startsWith(CB), `${cid}: ${r.status} ${r.headers.location}`);
        assert.ok(r.status >= 400, `${cid}: ${r.status}`);
        assert.ok(Date.now() - t0 < 4000, `${cid} took ${Date.now() - t0} ms`);
      }
    });

    it('hostile bytes in the login form: huge, NUL, non-UTF-8, repeated fields', async () => {
      const flow = await newFlow();
      const page = await request(t, `/oauth2/login?flow=${flow}`);
      const cookie = (page.headers['set-cookie'] || []).map((c) => c.split(';')[0]).join('; ');
      const csrf = (page.text.match(/name="csrf" value="([^"]*)"/) || [])[1];
      assert.ok(csrf, page.text);
      const bodies = [
        `flow=${flow}&csrf=${csrf}&email=${'a'.repeat(1 << 20)}&password=x`,
        `flow=${flow}&csrf=${csrf}&email=a%00b@example.com&password=secret-password-1`,
        `flow=${flow}&csrf=${csrf}&email=%ff%fe@example.com&password=%ff%fe%fd%fc%fb%fa%f9%f8`,
        `flow=${flow}&csrf=${csrf}&email=${encodeURIComponent(s.user.email)}&email=x@example.com&password=${encodeURIComponent(s.user.password)}`,
        `flow=${flow}&flow=${flow}&csrf=${csrf}&email=${encodeURIComponent(s.user.email)}&password=${encodeURIComponent(s.user.password)}`,
        `flow=${flow}&csrf=${csrf}&email=${encodeURIComponent(s.user.email)}&password=${'p'.repeat(100000)}`,
      ];
      for (const body of bodies) {
        const r = await request(t, '/oauth2/login', { method: 'POST', headers: { ...FORM, cookie, origin: t.url }, body, from: '127.0.0.20' });
        assert.ok([400, 401, 403, 413, 429].includes(r.status), `${body.slice(0, 100)}: ${r.status} ${r.text.slice(0, 300)}`);
        assert.ok(!(r.headers['set-cookie'] || []).some((c) => c.startsWith('tokend_session=tku_')), `signed in with ${body.slice(0, 100)}`);
      }
      assert.equal(await health(t), 200);
    });


    it('a locked store during token issue: a bounded answer, /health and other requests answer, the code still works after', async (c) => {
      if (t.backend !== 'sqlite') return c.skip('SQLite file lock');
      const code = await codeFor(t, s.conf, s.user);
      // another process holds the write lock
      const holder = spawn('sqlite3', [path.join(t.dataDir, 'tokend.db')], { stdio: ['pipe', 'pipe', 'pipe'] });
      holder.stdin.write('BEGIN IMMEDIATE;\nSELECT 1;\n');
      await new Promise((res) => holder.stdout.once('data', res));
      try {
        const t0 = Date.now();
        const pending = token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: PK.verifier }, s.conf);
        // /health may wait behind the token request on the same HTTP worker
        // (up to the store's busy timeout, 5 s): see the todo test below
        const h0 = Date.now();
        assert.equal((await request(t, '/health', { timeoutMs: 15000 })).status, 200);
        assert.ok(Date.now() - h0 < 12000, `/health took ${Date.now() - h0} ms`);
        const cc = await token(t, { grant_type: 'client_credentials' }, s.conf2);
        assert.ok([200, 503].includes(cc.status), cc.text);
        const r = await pending;
        const ms = Date.now() - t0;
        assert.ok(r.status === 503 || r.status === 200, `${r.status} ${r.text}`);
        assert.ok(ms < 30000, `answered after ${ms} ms`);
        if (r.status === 503) assert.equal(r.json.error, 'temporarily_unavailable', r.text);
        holder.stdin.write('ROLLBACK;\n.quit\n');
        await new Promise((res) => holder.once('exit', res));
        if (r.status === 503) {
          const again = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: PK.verifier }, s.conf);
          assert.equal(again.status, 200, `after a 503 the code is burnt: ${again.text}`);
        }
      } finally {
        if (holder.exitCode === null) holder.kill('SIGKILL');
      }
    });


    it('/health answers within 1 s while token requests wait on a locked store', async () => {
      // SQLite: another process holds the write lock (the grant's transaction
      // waits to begin); PostgreSQL: another session holds the codes' rows
      // (SELECT ... FOR UPDATE), which redeeming a code locks
      const pg = t.backend === 'postgres';
      const code = pg ? await codeFor(t, s.conf, s.user) : `tka_${'A'.repeat(43)}`;
      const holder = pg
        ? spawn('psql', [t.store, '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1'], { stdio: ['pipe', 'pipe', 'pipe'] })
        : spawn('sqlite3', [path.join(t.dataDir, 'tokend.db')], { stdio: ['pipe', 'pipe', 'pipe'] });
      holder.stdin.write(pg ? 'BEGIN;\nSELECT 1 FROM oauth_codes FOR UPDATE;\nSELECT 1;\n' : 'BEGIN IMMEDIATE;\nSELECT 1;\n');
      await new Promise((res) => holder.stdout.once('data', res));
      try {
        const pending = [];
        for (let i = 0; i < 4; i++) pending.push(request(t, '/oauth2/token', { method: 'POST', headers: { ...FORM, authorization: basic(s.conf) }, body: form({ grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: PK.verifier }), timeoutMs: 30000 }).catch(() => null));
        // the four wait on the lock, each on a handler thread
        await waitFor(async () => metric(await scrape(t), 'tokend_http_handlers', { state: 'running' }) === 4, { timeoutMs: 15000, message: 'four token requests waiting on the lock' });
        for (let i = 0; i < 5; i++) {
          const h0 = Date.now();
          assert.equal((await request(t, '/health', { timeoutMs: 15000 })).status, 200);
          assert.ok(Date.now() - h0 < 1000, `/health took ${Date.now() - h0} ms`);
        }
        // each answered: 503 temporarily_unavailable past the store's lock
        // wait (5 s), or the grant's own answer
        for (const r of await Promise.all(pending)) {
          assert.ok(r, 'a token request got no answer');
          assert.ok([200, 400, 503].includes(r.status), `${r.status} ${r.text}`);
          if (r.status === 503) assert.equal(r.json.error, 'temporarily_unavailable', r.text);
        }
      } finally {
        holder.stdin.write(pg ? 'ROLLBACK;\n\\q\n' : 'ROLLBACK;\n.quit\n');
        if (holder.exitCode === null) setTimeout(() => holder.kill('SIGKILL'), 1000).unref();
      }
    });


    it("a disabled user's refresh tokens stop working and the access tokens turn inactive", async () => {
      const u = await createUser(t);
      const code = await codeFor(t, s.conf, u);
      const r = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: PK.verifier }, s.conf);
      assert.equal(r.status, 200, r.text);
      const d = await api(t, `/v1/users/${u.id}`, { method: 'PATCH', json: { status: 'disabled' } });
      assert.equal(d.status, 200, d.text);
      const x = await token(t, { grant_type: 'refresh_token', refresh_token: r.json.refresh_token }, s.conf);
      assert.equal(x.status, 400, `a disabled user's refresh token still refreshes: ${x.text}`);
      assert.equal(x.json.error, 'invalid_grant');
      const i = await request(t, '/oauth2/introspect', { method: 'POST', body: form({ token: r.json.refresh_token }), headers: { ...FORM, authorization: basic(s.conf2) } });
      assert.equal(i.json.active, false, `a disabled user's refresh token is active: ${i.text}`);
      await waitFor(async () => (await request(t, '/oauth2/introspect', { method: 'POST', body: form({ token: r.json.access_token }), headers: { ...FORM, authorization: basic(s.conf2) } })).json.active === false, { timeoutMs: 3000, message: "the disabled user's access token turns inactive" });
    });


    it("a disabled public client's refresh tokens stop working and its access tokens turn inactive", async () => {
      const c = await client(t, pubSpec);
      const code = await codeFor(t, c, s.user);
      const r = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: PK.verifier }, c);
      assert.equal(r.status, 200, r.text);
      const d = await api(t, `/v1/oauth/clients/${c.id}`, { method: 'PATCH', json: { status: 'disabled' } });
      assert.equal(d.status, 200, d.text);
      const x = await token(t, { grant_type: 'refresh_token', refresh_token: r.json.refresh_token }, c);
      assert.notEqual(x.status, 200, `a disabled client's refresh token still refreshes: ${x.text}`);
      await waitFor(async () => (await request(t, '/oauth2/introspect', { method: 'POST', body: form({ token: r.json.access_token }), headers: { ...FORM, authorization: basic(s.conf2) } })).json.active === false, { timeoutMs: 3000, message: "the disabled client's access token turns inactive" });
    });


    it("a disabled confidential client's client_credentials access tokens turn inactive", async () => {
      const c = await client(t, confSpec);
      const r = await token(t, { grant_type: 'client_credentials' }, c);
      assert.equal(r.status, 200, r.text);
      const introspect = async () => (await request(t, '/oauth2/introspect', { method: 'POST', body: form({ token: r.json.access_token }), headers: { ...FORM, authorization: basic(s.conf2) } })).json.active;
      assert.equal(await introspect(), true, 'active while its client is');
      const d = await api(t, `/v1/oauth/clients/${c.id}`, { method: 'PATCH', json: { status: 'disabled' } });
      assert.equal(d.status, 200, d.text);
      await waitFor(async () => (await introspect()) === false, { timeoutMs: 3000, message: "the disabled client's client_credentials token turns inactive" });
      // disabling suspends: a re-enabled client's unexpired tokens are active again (README)
      const en = await api(t, `/v1/oauth/clients/${c.id}`, { method: 'PATCH', json: { status: 'active' } });
      assert.equal(en.status, 200, en.text);
      await waitFor(async () => (await introspect()) === true, { timeoutMs: 3000, message: 'active again once its client is' });
    });

    it('a code issued to one client is refused to another client of the tenant and to another tenant', async () => {
      const code = await codeFor(t, s.conf, s.user);
      let r = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: PK.verifier }, s.conf2);
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error, 'invalid_grant');
      r = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: PK.verifier }, s.other);
      assert.equal(r.json.error, 'invalid_grant', r.text);
    });

    it("refresh tokens, introspection and revocation do not cross clients or tenants", async () => {
      const code = await codeFor(t, s.conf, s.user);
      const r = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: PK.verifier }, s.conf);
      assert.equal(r.status, 200, r.text);
      const { access_token, refresh_token } = r.json;
      // refresh by another client
      let x = await token(t, { grant_type: 'refresh_token', refresh_token }, s.conf2);
      assert.equal(x.json.error, 'invalid_grant', x.text);
      x = await token(t, { grant_type: 'refresh_token', refresh_token }, s.other);
      assert.equal(x.json.error, 'invalid_grant', x.text);
      // introspection by another tenant's client
      x = await request(t, '/oauth2/introspect', { method: 'POST', body: form({ token: access_token }), headers: { ...FORM, authorization: basic(s.other) } });
      assert.equal(x.status, 200, x.text);
      assert.equal(x.json.active, false, `another tenant's client sees ${x.text}`);
      x = await request(t, '/oauth2/introspect', { method: 'POST', body: form({ token: refresh_token }), headers: { ...FORM, authorization: basic(s.other) } });
      assert.equal(x.json.active, false, `another tenant's client sees ${x.text}`);
      // revocation by another tenant's client changes nothing
      x = await request(t, '/oauth2/revoke', { method: 'POST', body: form({ token: refresh_token }), headers: { ...FORM, authorization: basic(s.other) } });
      assert.ok(x.status === 200 || x.status === 400, x.text);
      x = await request(t, '/oauth2/revoke', { method: 'POST', body: form({ token: access_token }), headers: { ...FORM, authorization: basic(s.other) } });
      x = await request(t, '/oauth2/introspect', { method: 'POST', body: form({ token: access_token }), headers: { ...FORM, authorization: basic(s.conf) } });
      assert.equal(x.json.active, true, `revoked by another tenant: ${x.text}`);
      // revocation by another client of the same tenant (RFC 7009 §2.1: the token was not issued to it)
      x = await request(t, '/oauth2/revoke', { method: 'POST', body: form({ token: refresh_token }), headers: { ...FORM, authorization: basic(s.conf2) } });
      assert.ok(x.status === 200 || x.status === 400, x.text);
      x = await token(t, { grant_type: 'refresh_token', refresh_token }, s.conf);
      assert.equal(x.status, 200, `the refresh token was revoked by another client: ${x.text}`);
    });

    it('forged JWTs are inactive: alg none, HS256 keyed with the public key, unknown or hostile kid, huge', async () => {
      const r = await token(t, { grant_type: 'client_credentials' }, s.conf);
      assert.equal(r.status, 200, r.text);
      const [h, p] = r.json.access_token.split('.');
      const header = JSON.parse(Buffer.from(h, 'base64url'));
      const claims = JSON.parse(Buffer.from(p, 'base64url'));
      const jwks = (await request(t, '/oauth2/jwks')).json;
      const pub = jwks.keys.find((k) => k.kid === header.kid);
      const forged = [];
      forged.push(`${b64u({ ...header, alg: 'none' })}.${p}.`);
      forged.push(`${b64u({ ...header, alg: 'none' })}.${p}`);
      forged.push(`${b64u({ ...header, alg: 'NONE' })}.${p}.`);
      const hsHeader = b64u({ ...header, alg: 'HS256' });
      const pem = crypto.createPublicKey({ key: pub, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
      forged.push(`${hsHeader}.${p}.${crypto.createHmac('sha256', pem).update(`${hsHeader}.${p}`).digest('base64url')}`);
      forged.push(`${hsHeader}.${p}.${crypto.createHmac('sha256', JSON.stringify(pub)).update(`${hsHeader}.${p}`).digest('base64url')}`);
      for (const kid of ['../../etc/passwd', "' OR 1=1 --", 'x'.repeat(5000), '', null])
        forged.push(`${b64u({ ...header, kid })}.${p}.${r.json.access_token.split('.')[2]}`);
      forged.push(`${b64u({ ...header, jwk: pub })}.${b64u({ ...claims, sub: 'admin' })}.${r.json.access_token.split('.')[2]}`);
      forged.push(`${h}.${b64u({ ...claims, exp: claims.exp + 100000 })}.${r.json.access_token.split('.')[2]}`);
      forged.push(`${h}.${b64u({ ...claims, pad: 'A'.repeat(60000) })}.${r.json.access_token.split('.')[2]}`);
      for (const f of forged) {
        const x = await request(t, '/oauth2/introspect', { method: 'POST', body: form({ token: f }), headers: { ...FORM, authorization: basic(s.conf2) } });
        assert.ok(x.status === 200 || x.status === 400 || x.status === 413, `${x.status} ${x.text}`);
        if (x.status === 200) assert.equal(x.json.active, false, `forged token accepted: ${f.slice(0, 200)} -> ${x.text}`);
      }
      assert.equal(await health(t), 200);
    });

    it('hostile bytes and repeated parameters at /oauth2/token are invalid_request', async () => {
      const cases = [
        'grant_type=client_credentials&grant_type=client_credentials',
        'grant_type=client_credentials&scope=notes:read&scope=notes:read',
        'grant_type=client_credentials&scope=notes%00read',
        'grant_type=client_credentials&scope=%ff%fe',
        `grant_type=client_credentials&scope=${'a'.repeat(1 << 20)}`,
        'grant_type=authorization_code&code=tka_%00&redirect_uri=x',
        `grant_type=refresh_token&refresh_token=${'tkr_'.padEnd(100000, 'A')}`,
      ];
      for (const body of cases) {
        let x;
        try {
          x = await request(t, '/oauth2/token', { method: 'POST', body, headers: { ...FORM, authorization: basic(s.conf) } });
        } catch (err) {
          // a body over max_body may be refused (413) and the connection
          // closed before the client has written it all
          assert.ok(body.length > 1000000 && /EPIPE|ECONNRESET/.test(String(err.code || err.message)), `${body.slice(0, 80)}: ${err}`);
          continue;
        }
        assert.ok(x.status === 400 || x.status === 413, `${body.slice(0, 80)}: ${x.status} ${x.text.slice(0, 300)}`);
      }
      assert.equal(await health(t), 200);
    });

    it('wrong client secrets: 401, same answer for an unknown client, node responsive', async () => {
      const bad = { client_id: s.conf.client_id, client_secret: 'tks_wrong' };
      const unknown = { client_id: 'nope', client_secret: 'tks_wrong' };
      const a = await token(t, { grant_type: 'client_credentials' }, bad);
      const b = await token(t, { grant_type: 'client_credentials' }, unknown);
      assert.equal(a.status, 401, a.text);
      assert.equal(b.status, 401, b.text);
      assert.equal(a.json.error, b.json.error);
      assert.ok(a.headers['www-authenticate'], 'WWW-Authenticate with Basic');
      const jobs = [];
      for (let i = 0; i < 200; i++) jobs.push(token(t, { grant_type: 'client_credentials' }, bad));
      const rs = await Promise.all(jobs);
      assert.ok(rs.every((x) => x.status === 401 || x.status === 429), [...new Set(rs.map((x) => x.status))].join(','));
      assert.equal(await health(t), 200);
    });

    it('reflected values: the error page and the redirect escape what the request sent', async () => {
      const evil = '"><script>alert(1)</script>';
      let r = await request(t, `/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: evil, redirect_uri: `https://x.example/${evil}`, state: evil })}`);
      assert.ok(!r.text.includes('<script>alert'), r.text);
      r = await request(t, `/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: s.conf.client_id, redirect_uri: `https://x.example/${evil}`, state: evil })}`);
      assert.ok(!r.headers.location, `redirected to ${r.headers.location}`);
      assert.ok(!r.text.includes('<script>alert'), r.text);
      // a valid redirect with a hostile state: the state is percent-encoded in the Location
      r = await request(t, `/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: s.conf.client_id, redirect_uri: CB, state: evil, scope: 'nope' })}`);
      if (r.headers.location) {
        assert.ok(r.headers.location.startsWith(`${CB}?`), r.headers.location);
        assert.ok(!/[<>"\s]/.test(r.headers.location), r.headers.location);
        assert.equal(new URL(r.headers.location).searchParams.get('state'), evil);
      }
      // CR LF in state or redirect_uri never reaches a header
      r = await request(t, `/oauth2/authorize?response_type=code&client_id=${encodeURIComponent(s.conf.client_id)}&redirect_uri=${encodeURIComponent(CB)}&state=a%0d%0aSet-Cookie:%20x=1`);
      assert.ok(!r.headers['set-cookie']?.some((c) => c.startsWith('x=')), JSON.stringify(r.headers));
      r = await request(t, `/oauth2/authorize?response_type=code&client_id=${encodeURIComponent(s.conf.client_id)}&redirect_uri=${encodeURIComponent(CB)}%0d%0aSet-Cookie:%20x=1&state=a`);
      assert.ok(!r.headers['set-cookie']?.some((c) => c.startsWith('x=')), JSON.stringify(r.headers));
      assert.ok(!r.headers.location, r.headers.location);
    });

    it('open redirect attempts never redirect', async () => {
      const tries = [
        'https://app.example/cb/', 'https://app.example/cb?x=1', 'https://app.example/cb#x', 'https://app.example@evil.example/cb',
        'https://evil.example\\@app.example/cb', 'https://app.example%2f@evil.example/cb', 'https://app.example/cb/../../evil',
        'https://APP.example/cb', 'javascript:alert(1)', 'data:text/html,x', '//evil.example/cb', 'http://127.0.0.1:9/cb',
        'https://app.example/cb%2f..%2f', ' https://app.example/cb', 'https://app.example/cb ',
      ];
      for (const redirect_uri of tries) {
        const r = await request(t, `/oauth2/authorize?${new URLSearchParams({ response_type: 'code', client_id: s.pub.client_id, redirect_uri, state: 's', code_challenge: pkcePair().challenge, code_challenge_method: 'S256' })}`);
        assert.ok(!r.headers.location || r.headers.location.startsWith('/oauth2/'), `${redirect_uri} -> ${r.status} ${r.headers.location}`);
      }
    });

    it('concurrent refreshes of one rotated token: at most one new refresh token stays usable', async () => {
      const { verifier, challenge } = pkcePair();
      const code = await codeFor(t, s.pub, s.user, challenge);
      const r = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: verifier }, s.pub);
      assert.equal(r.status, 200, r.text);
      const rs = await Promise.all(Array.from({ length: 8 }, () => token(t, { grant_type: 'refresh_token', refresh_token: r.json.refresh_token }, s.pub)));
      const won = rs.filter((x) => x.status === 200);
      assert.ok(won.length >= 1, rs.map((x) => x.text).join('\n'));
      let usable = 0;
      for (const w of won) {
        const x = await request(t, '/oauth2/introspect', { method: 'POST', body: form({ token: w.json.refresh_token }), headers: { ...FORM, authorization: basic(s.conf) } });
        if (x.json?.active) usable++;
      }
      assert.ok(usable <= 1, `${usable} of ${won.length} rotated refresh tokens are active`);
    });

    it('trickled and pipelined requests: /health stays responsive', async () => {
      const socks = [];
      for (let i = 0; i < 64; i++) {
        const c = net.connect(t.port, '127.0.0.1');
        c.on('error', () => {});
        c.write('POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\ngrant_type=');
        socks.push(c);
      }
      const p = net.connect(t.port, '127.0.0.1');
      p.on('error', () => {});
      const one = `POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: ${basic({ client_id: s.conf.client_id, client_secret: 'tks_nope' })}\r\nContent-Length: 29\r\n\r\ngrant_type=client_credentials`;
      p.write(one.repeat(2000));
      p.pause();
      const lat = [];
      for (let i = 0; i < 5; i++) {
        const h0 = Date.now();
        assert.equal((await request(t, '/health', { timeoutMs: 15000 })).status, 200);
        lat.push(Date.now() - h0);
      }
      console.log(`# /health under trickle and pipelining: ${lat.join(', ')} ms`);
      assert.ok(lat.reduce((a, b) => a + b, 0) < 10000, `health took ${lat.join(', ')} ms`);
      for (const c of socks) c.destroy();
      p.destroy();
    });
  });
}

const hasPg = backends().includes('postgres');

describe('races across two PostgreSQL nodes (postgres)', { timeout: SUITE_TIMEOUT_MS, skip: hasPg ? false : 'needs TOKEND_TEST_PG (tests/with-postgres.sh)' }, () => {
  let a;
  let b;
  let s;
  before(async () => {
    const store = await createPgDatabase();
    a = await startTokend({ backend: 'postgres', store, args: ['--node-name', 'node-a', ...FAST] });
    const dir = await freshDir('node-b');
    await copyFile(path.join(a.dataDir, 'unseal.key'), path.join(dir, 'unseal.key'));
    b = await startTokend({ backend: 'postgres', store, dataDir: dir, args: ['--node-name', 'node-b', ...FAST], allowNoRootToken: true });
    b.token = a.token;
    await scope(a, 'notes:read');
    s = { user: await createUser(a), pub: await client(a, pubSpec), rs: await client(a, confSpec) };
  });
  after(async () => {
    await Promise.all([stopAndScan(a), stopAndScan(b)]);
  });

  it('one code redeemed on both nodes at once: exactly one wins', async () => {
    for (let round = 0; round < 3; round++) {
      const code = await codeFor(a, s.pub, s.user);
      const body = { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: PK.verifier };
      const rs = await Promise.all([token(a, body, s.pub), token(b, body, s.pub), token(a, body, s.pub), token(b, body, s.pub)]);
      const won = rs.filter((x) => x.status === 200);
      assert.equal(won.length, 1, rs.map((x) => `${x.status} ${x.text}`).join('\n'));
      // the replay revoked what the winner got (RFC 9700 §4.5): at most inactive
      await waitFor(async () => (await request(a, '/oauth2/introspect', { method: 'POST', body: form({ token: won[0].json.access_token }), headers: { ...FORM, authorization: basic(s.rs) } })).json.active === false, { timeoutMs: 5000, message: 'the winner\'s tokens revoked by the replay' });
    }
  });

  it('one rotated refresh token used on both nodes at once: at most one new token stays usable', async () => {
    const code = await codeFor(a, s.pub, s.user);
    const r = await token(a, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: PK.verifier }, s.pub);
    assert.equal(r.status, 200, r.text);
    const body = { grant_type: 'refresh_token', refresh_token: r.json.refresh_token };
    const rs = await Promise.all([token(a, body, s.pub), token(b, body, s.pub), token(a, body, s.pub), token(b, body, s.pub)]);
    const won = rs.filter((x) => x.status === 200);
    assert.ok(won.length >= 1, rs.map((x) => x.text).join('\n'));
    let usable = 0;
    for (const w of won) {
      const x = await token(a, { grant_type: 'refresh_token', refresh_token: w.json.refresh_token }, s.pub);
      if (x.status === 200) usable++;
    }
    assert.ok(usable <= 1, `${usable} of ${won.length} rotated refresh tokens still refresh`);
  });
});
