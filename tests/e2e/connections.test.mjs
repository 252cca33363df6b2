// connections.test.mjs: upstream connections (issue 18 items 3, 4, 6)
// against a fault-injecting fake token endpoint (lib/fakeupstream.mjs):
// import, list, show, delete (never a token in an answer); GET .../token
// answers from the stored token or refreshes once (single flight: 50
// concurrent callers, one upstream refresh, one answer, /health answering
// meanwhile); rotation stored; transient failures (500, 429 Retry-After,
// HTML, 10 MiB) give 502 refresh_failed and status refresh_error;
// permanent ones (invalid_grant, Bitrix24's expired_token) 409
// needs_reconnect; Bitrix24-style GET with query parameters and eBay-style
// Basic with scopes; the debug refresh shows the masked exchange; one
// event per attempt with masked detail; tenants and roles; and the secret
// scan at the end (every upstream token and client secret noted).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { allEvents, api, backends, createTenant, request, runCli, startTokend, storeSql, uniqueId, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { startFakeUpstream } from './lib/fakeupstream.mjs';
import { noteSecret, stopAndScan } from './lib/secrets.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function secret(prefix) {
  const s = `${prefix}-${uniqueId('s').replace(/[^A-Za-z0-9]/g, '')}${Math.random().toString(36).slice(2)}`;
  noteSecret(s, { kind: 'upstream' });
  return s;
}

const iso = (msFromNow) => new Date(Date.now() + msFromNow).toISOString().replace(/\.\d+Z$/, 'Z');

for (const backend of backends()) {
  describe(`connections (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let up;
    let other;
    let viewer;

    before(async () => {
      up = await startFakeUpstream();
      t = await startTokend({ backend, args: ['--refresh-timeout', '10', '--refresh-concurrency', '0'] });
      other = await createTenant(t);
      const v = await request(t, '/v1/operator-tokens', { method: 'POST', token: t.token, json: { name: 'viewer', role: 'viewer' } });
      assert.equal(v.status, 201, v.text);
      viewer = v.json.token;
    });
    after(async () => {
      await stopAndScan(t);
      await up?.close();
    });

    /** An app whose token endpoint is a fresh fake endpoint, and a connection imported into it. */
    async function setup({ provider = 'generic-oauth2', auth = 'post', clientAuth = 'client_secret_post', expiresIn = 3600, extra = {}, behaviour, scopes = ['read'] } = {}) {
      const name = uniqueId('ep').replace(/[^A-Za-z0-9]/g, '');
      const clientId = `cid-${name}`;
      const clientSecret = secret('cs');
      const refreshToken = secret('rt0');
      const accessToken = secret('at0');
      const ep = up.endpoint(name, { clientId, clientSecret, auth, refreshToken });
      if (behaviour) ep.behave(behaviour);
      const appBody = { provider, name, client_id: clientId, client_secret: clientSecret, scopes, token_url: ep.url, ...extra };
      if (clientAuth) appBody.client_auth = clientAuth;
      const a = await request(t, '/v1/provider-apps', { method: 'POST', token: t.token, json: appBody });
      assert.equal(a.status, 201, a.text);
      const c = await request(t, '/v1/connections', {
        method: 'POST',
        token: t.token,
        json: { app_id: a.json.id, label: `conn ${name}`, access_token: accessToken, refresh_token: refreshToken, expires_at: iso(expiresIn * 1000), scopes },
      });
      assert.equal(c.status, 201, c.text);
      assert.ok(!c.text.includes(accessToken) && !c.text.includes(refreshToken), 'no token in the import answer');
      return { ep, app: a.json, conn: c.json, accessToken, refreshToken, clientSecret, clientId };
    }

    const getToken = (id, q = '', token = t.token) => request(t, `/v1/connections/${id}/token${q}`, { token, noteSecrets: false });

    it('imports a connection; show and list never hold a token; a valid token is answered without a refresh', async () => {
      const s = await setup();
      const c = s.conn;
      assert.match(c.id, UUID);
      assert.equal(c.status, 'ok');
      assert.equal(c.version, 1);
      assert.equal(c.failure_count, 0);
      assert.equal(c.has_refresh_token, true);
      assert.equal(c.app_id, s.app.id);
      assert.equal(c.provider, 'generic-oauth2');
      assert.ok(c.next_refresh_at, 'next_refresh_at set');
      assert.equal(c.last_refresh_at, null);
      for (const k of ['access_token', 'refresh_token']) assert.equal(c[k], undefined);

      const g = await getToken(c.id);
      assert.equal(g.status, 200, g.text);
      assert.equal(g.json.access_token, s.accessToken);
      assert.equal(g.json.token_type, 'Bearer');
      assert.deepEqual(g.json.scopes, ['read']);
      assert.ok(g.json.expires_in > 3000);
      assert.equal(g.headers['cache-control'], 'no-store');
      assert.equal(s.ep.requests.length, 0, 'no upstream call for a valid token');

      const sh = await api(t, `/v1/connections/${c.id}`);
      assert.equal(sh.status, 200, sh.text);
      const l = await api(t, `/v1/connections?app_id=${s.app.id}`);
      assert.equal(l.status, 200, l.text);
      assert.equal(l.json.connections.length, 1);
      assert.equal(l.json.connections[0].id, c.id);
      const lok = await api(t, `/v1/connections?status=ok&app_id=${s.app.id}`);
      assert.equal(lok.json.connections.length, 1);
      const lnr = await api(t, `/v1/connections?status=needs_reconnect&app_id=${s.app.id}`);
      assert.equal(lnr.json.connections.length, 0);
      for (const r of [sh, l]) assert.ok(!r.text.includes(s.accessToken) && !r.text.includes(s.refreshToken));
      assert.equal((await api(t, '/v1/connections?status=nope')).json.field, 'status');
      assert.equal((await api(t, '/v1/connections?limit=0')).json.field, 'limit');

      // tenants and roles
      assert.equal((await request(t, `/v1/connections/${c.id}`, { token: other.token })).status, 404);
      assert.equal((await getToken(c.id, '', other.token)).status, 404);
      assert.equal((await request(t, `/v1/connections/${c.id}/refresh`, { method: 'POST', token: other.token })).status, 404);
      assert.equal((await request(t, `/v1/connections/${c.id}`, { method: 'DELETE', token: other.token })).status, 404);
      assert.equal((await request(t, `/v1/connections/${c.id}`, { token: viewer })).status, 200, 'a viewer reads');
      const vt = await getToken(c.id, '', viewer);
      assert.equal(vt.status, 403, vt.text);
      assert.ok(!vt.text.includes(s.accessToken));
      assert.equal((await request(t, '/v1/connections', { method: 'POST', token: viewer, json: {} })).status, 403);

      // the app cannot go while the connection uses it
      const da = await request(t, `/v1/provider-apps/${s.app.id}`, { method: 'DELETE', token: t.token });
      assert.equal(da.status, 409, da.text);
      assert.equal(da.json.error, 'app_in_use');
    });

    it('import refuses bad input naming the field', async () => {
      const s = await setup();
      const base = { app_id: s.app.id, label: 'x', access_token: secret('at'), expires_at: iso(3600e3) };
      const cases = [
        [{ ...base, app_id: undefined }, 'app_id'],
        [{ ...base, app_id: '0190a0a0-0000-7000-8000-000000000000' }, 'app_id'],
        [{ ...base, label: '' }, 'label'],
        [{ ...base, access_token: '' }, 'access_token'],
        [{ ...base, access_token: 'a\nb' }, 'access_token'],
        [{ ...base, access_token: 'x'.repeat(9000) }, 'access_token'],
        [{ ...base, refresh_token: 5 }, 'refresh_token'],
        [{ ...base, expires_at: 'tomorrow' }, 'expires_at'],
        [{ ...base, scopes: 'read' }, 'scopes'],
        [{ ...base, scopes: ['a b'] }, 'scopes'],
        [{ ...base, extra: 1 }, 'extra'],
      ];
      for (const [json, field] of cases) {
        const r = await request(t, '/v1/connections', { method: 'POST', token: t.token, json });
        assert.equal(r.status, 400, `${field}: ${r.text}`);
        assert.equal(r.json.field, field, r.text);
      }
      // another tenant's app is not usable
      const r = await request(t, '/v1/connections', { method: 'POST', token: other.token, json: base });
      assert.equal(r.status, 400);
      assert.equal(r.json.field, 'app_id');
    });

    it('an expiring token is refreshed once (client_secret_post); a rotated refresh token is stored and used next', async () => {
      const s = await setup({ expiresIn: 30, behaviour: { kind: 'ok', rotate: true, expiresIn: 3600 } });
      const g = await getToken(s.conn.id, '?min_ttl=60');
      assert.equal(g.status, 200, g.text);
      assert.notEqual(g.json.access_token, s.accessToken);
      assert.equal(g.json.access_token, s.ep.lastAccessToken);
      assert.equal(s.ep.requests.length, 1);
      const rq = s.ep.requests[0];
      assert.equal(rq.method, 'POST');
      assert.equal(rq.form.grant_type, 'refresh_token');
      assert.equal(rq.form.client_id, s.clientId);
      assert.equal(rq.form.scope, undefined, 'no scopes on refresh for this provider');
      assert.equal(rq.headers.authorization, undefined);
      const sh = await api(t, `/v1/connections/${s.conn.id}`);
      assert.equal(sh.json.version, 2);
      assert.equal(sh.json.status, 'ok');
      assert.ok(sh.json.last_refresh_at);
      // min_ttl=0 with a valid token: no refresh
      assert.equal((await getToken(s.conn.id, '?min_ttl=0')).json.access_token, g.json.access_token);
      // the rotated refresh token is the one sent next (the fake refuses the old one)
      const m = await request(t, `/v1/connections/${s.conn.id}/refresh`, { method: 'POST', token: t.token });
      assert.equal(m.status, 200, m.text);
      assert.equal(m.json.outcome, 'ok');
      assert.equal(m.json.rotated, true);
      assert.equal(s.ep.requests.length, 2);
      assert.equal(s.ep.refreshes, 2, 'both refreshes accepted: the rotated token was stored');
      assert.ok(!m.text.includes(s.ep.lastAccessToken), 'the manual refresh answers no token');
      assert.equal((await getToken(s.conn.id)).json.access_token, s.ep.lastAccessToken);
      assert.equal((await getToken(s.conn.id, '?min_ttl=x')).status, 400);
    });

    it('50 concurrent get-token calls on an expiring connection: one upstream refresh, one token, /health answers meanwhile', async () => {
      const s = await setup({ expiresIn: 10, behaviour: { kind: 'ok', rotate: true, expiresIn: 3600, delayMs: 3000 } });
      const calls = [];
      for (let i = 0; i < 50; i++) calls.push(getToken(s.conn.id));
      // while the refresh is out, the node answers
      await new Promise((r) => setTimeout(r, 300));
      const h0 = Date.now();
      const h = await request(t, '/health');
      assert.equal(h.status, 200);
      assert.ok(Date.now() - h0 < 2500, `/health took ${Date.now() - h0} ms during the refresh`);
      assert.equal(s.ep.refreshes, 0, '/health answered while the refresh was still out');
      const rs = await Promise.all(calls);
      for (const r of rs) assert.equal(r.status, 200, r.text);
      const tokens = new Set(rs.map((r) => r.json.access_token));
      assert.equal(tokens.size, 1, 'all got the same token');
      assert.equal([...tokens][0], s.ep.lastAccessToken);
      assert.equal(s.ep.requests.length, 1, 'exactly one upstream refresh');
      const ev = await allEvents(t, `kind=refresh&subject=${s.conn.id}`);
      assert.equal(ev.length, 1, 'one event for the one attempt');
      assert.equal(ev[0].source, 'on_demand');
      assert.equal(ev[0].outcome, 'ok');
    });

    it('a manual refresh beside an on-demand one (rotation without grace): one upstream request, the refresh token is never sent twice', async () => {
      // the attempt that holds the connection's lease sends; the other waits for its commit
      // and answers from it (a second request with the same refresh token would be refused
      // invalid_grant by a provider that rotates without grace)
      const s = await setup({ expiresIn: 10, behaviour: { kind: 'ok', rotate: true, expiresIn: 3600, delayMs: 200, okExtraDelayMs: 2000 } });
      const [g, m] = await Promise.all([
        getToken(s.conn.id),
        request(t, `/v1/connections/${s.conn.id}/refresh`, { method: 'POST', token: t.token }),
      ]);
      // one request, or two in turn (the manual one after the on-demand one committed, with
      // the rotated refresh token): never the same refresh token twice, never refused
      const sent = s.ep.requests.map((q) => q.form.refresh_token);
      assert.equal(new Set(sent).size, sent.length, 'a refresh token was sent twice');
      assert.equal(s.ep.refreshes, sent.length, 'every request was accepted');
      assert.deepEqual([g.status, m.status], [200, 200], `${g.text} ${m.text}`);
      const sh = await api(t, `/v1/connections/${s.conn.id}`);
      assert.equal(sh.json.status, 'ok', sh.text);
      assert.equal((await getToken(s.conn.id)).json.access_token, s.ep.lastAccessToken);
      s.ep.behave({ kind: 'ok', rotate: true, expiresIn: 3600 });
      const again = await request(t, `/v1/connections/${s.conn.id}/refresh`, { method: 'POST', token: t.token });
      assert.equal(again.status, 200, `the rotated refresh token was kept: ${again.text}`);
      const ev = await allEvents(t, `kind=refresh&subject=${s.conn.id}`);
      assert.deepEqual(ev.map((e) => e.outcome), Array(sent.length + 1).fill('ok'));
    });

    it('invalid_grant: 409 needs_reconnect with the reason; no further automatic attempts', async () => {
      const s = await setup({ expiresIn: 5, behaviour: { kind: 'invalid_grant' } });
      const g = await getToken(s.conn.id);
      assert.equal(g.status, 409, g.text);
      assert.equal(g.json.error, 'needs_reconnect');
      assert.equal(g.json.reason, 'invalid_grant');
      const sh = await api(t, `/v1/connections/${s.conn.id}`);
      assert.equal(sh.json.status, 'needs_reconnect');
      assert.equal(sh.json.last_error_code, 'invalid_grant');
      assert.equal(sh.json.next_refresh_at, null);
      assert.equal(sh.json.failure_count, 1);
      const g2 = await getToken(s.conn.id);
      assert.equal(g2.status, 409);
      assert.equal(g2.json.reason, 'invalid_grant');
      assert.equal(s.ep.requests.length, 1, 'no second attempt');
      const l = await api(t, `/v1/connections?status=needs_reconnect&app_id=${s.app.id}`);
      assert.equal(l.json.connections.length, 1);
      const ev = await allEvents(t, `kind=refresh&subject=${s.conn.id}`);
      assert.equal(ev.length, 1);
      assert.equal(ev[0].outcome, 'failed');
      assert.equal(ev[0].detail.reason, 'invalid_grant');
    });

    it('transient failures: 500, 429 with Retry-After, HTML, 10 MiB give 502 refresh_failed and refresh_error with a next attempt', async () => {
      const s = await setup({ expiresIn: 5, behaviour: { kind: 'status', status: 500 } });
      const g = await getToken(s.conn.id);
      assert.equal(g.status, 502, g.text);
      assert.equal(g.json.error, 'refresh_failed');
      assert.equal(g.json.reason, 'http_500');
      assert.equal(g.json.upstream.status, 500);
      assert.ok(g.json.next_attempt_at);
      let sh = await api(t, `/v1/connections/${s.conn.id}`);
      assert.equal(sh.json.status, 'refresh_error');
      assert.equal(sh.json.last_error_code, 'http_500');
      assert.equal(sh.json.failure_count, 1);
      assert.ok(Date.parse(sh.json.next_refresh_at) > Date.now());

      s.ep.behave({ kind: 'retry_after', retryAfter: 600 });
      const r = await getToken(s.conn.id);
      assert.equal(r.status, 502);
      assert.equal(r.json.reason, 'rate_limited');
      sh = await api(t, `/v1/connections/${s.conn.id}`);
      assert.ok(Date.parse(sh.json.next_refresh_at) >= Date.now() + 590e3, `Retry-After honoured: ${sh.json.next_refresh_at}`);
      assert.equal(sh.json.failure_count, 2);

      s.ep.behave({ kind: 'html' });
      const h = await getToken(s.conn.id);
      assert.equal(h.status, 502);
      assert.equal(h.json.reason, 'not_json');
      assert.match(h.json.upstream.body, /502 Bad Gateway/);

      s.ep.behave({ kind: 'huge' });
      const b = await getToken(s.conn.id);
      assert.equal(b.status, 502);
      assert.equal(b.json.reason, 'too_large');

      // recovery: ok again resets the error state
      s.ep.behave({ kind: 'ok', rotate: false, expiresIn: 3600 });
      const ok = await getToken(s.conn.id);
      assert.equal(ok.status, 200, ok.text);
      sh = await api(t, `/v1/connections/${s.conn.id}`);
      assert.equal(sh.json.status, 'ok');
      assert.equal(sh.json.failure_count, 0);
      assert.equal(sh.json.last_error_code, null);
      const ev = await allEvents(t, `kind=refresh&subject=${s.conn.id}`);
      assert.equal(ev.length, 5, 'one event per attempt');
      assert.deepEqual(ev.map((e) => e.outcome).sort(), ['error', 'error', 'error', 'error', 'ok']);
    });

    it('no expires_in: the provider app default_lifetime is assumed; no rotation keeps the old refresh token', async () => {
      const s = await setup({ expiresIn: 5, extra: { default_lifetime: 777 }, behaviour: { kind: 'ok', rotate: false, expiresIn: null } });
      const g = await getToken(s.conn.id);
      assert.equal(g.status, 200, g.text);
      assert.ok(g.json.expires_in > 700 && g.json.expires_in <= 777, `expires_in ${g.json.expires_in}`);
      const m = await request(t, `/v1/connections/${s.conn.id}/refresh`, { method: 'POST', token: t.token });
      assert.equal(m.status, 200, m.text);
      assert.equal(m.json.rotated, false);
      assert.equal(s.ep.refreshes, 2, 'the old refresh token was kept and accepted again');
    });

    it('Bitrix24 style: GET with the client and refresh token in the query; expired_token means reconnect', async () => {
      const s = await setup({
        provider: 'bitrix24',
        auth: 'query-get',
        clientAuth: null,
        expiresIn: 5,
        extra: { params: { domain: 'acme.bitrix24.com' } },
        scopes: ['crm'],
        behaviour: { kind: 'ok', rotate: true, expiresIn: 3600, scope: 'crm,user' },
      });
      const g = await getToken(s.conn.id);
      assert.equal(g.status, 200, g.text);
      const rq = s.ep.requests[0];
      assert.equal(rq.method, 'GET');
      assert.equal(rq.body, '');
      assert.equal(rq.query.grant_type, 'refresh_token');
      assert.equal(rq.query.client_id, s.clientId);
      assert.equal(rq.query.client_secret, s.clientSecret);
      assert.equal(rq.query.refresh_token, s.refreshToken);
      assert.deepEqual(g.json.scopes, ['crm', 'user'], 'scopes from the answer, split on commas');
      s.ep.behave({ kind: 'expired_token' });
      const d = await request(t, `/v1/connections/${s.conn.id}/refresh?debug=1`, { method: 'POST', token: t.token, noteSecrets: false });
      assert.equal(d.status, 409, d.text);
      assert.equal(d.json.reason, 'expired_token');
      assert.equal(d.json.debug.method, 'GET');
      assert.match(d.json.debug.url, /client_secret=\*\*\*/);
      assert.match(d.json.debug.url, /refresh_token=\*\*\*/);
      for (const v of [s.clientSecret, s.ep.refreshToken, s.refreshToken]) assert.ok(!d.text.includes(v), 'masked');
      const ev = await allEvents(t, `kind=refresh&subject=${s.conn.id}`);
      assert.equal(ev.length, 2);
      const failed = ev.find((e) => e.outcome === 'failed');
      assert.equal(failed.source, 'debug');
      assert.equal(failed.detail.provider, 'bitrix24');
      assert.equal(failed.detail.method, 'GET');
      assert.match(failed.detail.url, /^http:\/\/127\.0\.0\.1:\d+\/[^?]+\/token\?/);
      assert.equal(failed.detail.status, 401);
      assert.match(failed.detail.refresh_token_sent, /^.{4}\.\.\.\(\d+ chars\)$/, 'a preview of the refresh token sent');
      assert.match(failed.detail.client_secret_sent, /^\.\.\.\(\d+ chars\)$/);
    });

    it('eBay style: HTTP Basic client authentication and the scopes sent on refresh; the debug refresh shows the masked exchange', async () => {
      const s = await setup({
        provider: 'ebay',
        auth: 'basic',
        clientAuth: null,
        expiresIn: 5,
        scopes: ['https://api.ebay.com/oauth/api_scope', 'https://api.ebay.com/oauth/api_scope/sell.inventory'],
        behaviour: { kind: 'ok', rotate: false, expiresIn: 7200 },
      });
      const d = await request(t, `/v1/connections/${s.conn.id}/refresh?debug=1`, { method: 'POST', token: t.token, noteSecrets: false });
      assert.equal(d.status, 200, d.text);
      assert.equal(d.json.outcome, 'ok');
      const rq = s.ep.requests[0];
      assert.match(rq.headers.authorization, /^Basic /);
      assert.equal(rq.form.scope, 'https://api.ebay.com/oauth/api_scope https://api.ebay.com/oauth/api_scope/sell.inventory');
      assert.equal(rq.form.client_secret, undefined, 'the secret only in the Authorization header');
      const dbg = d.json.debug;
      assert.equal(dbg.method, 'POST');
      assert.equal(dbg.status, 200);
      assert.equal(dbg.provider, 'ebay');
      assert.ok(dbg.request_body.includes('grant_type=refresh_token'), JSON.stringify(dbg));
      for (const v of [s.clientSecret, s.refreshToken, s.ep.lastAccessToken, Buffer.from(`${s.clientId}:${s.clientSecret}`).toString('base64')])
        assert.ok(!d.text.includes(v), 'the exchange is masked');
      const ev = await allEvents(t, `kind=refresh&subject=${s.conn.id}`);
      assert.equal(ev.length, 1);
      assert.equal(ev[0].source, 'debug');
      assert.equal(ev[0].subject_type ?? 'connection', 'connection');
      assert.ok(ev[0].latency_us > 0);
      assert.ok(ev[0].trace_id);
    });

    it('unauthorized: refreshes only when the reported token is the current one', async () => {
      const s = await setup({ expiresIn: 3600, behaviour: { kind: 'ok', rotate: true, expiresIn: 3600 } });
      const u1 = await request(t, `/v1/connections/${s.conn.id}/unauthorized`, { method: 'POST', token: t.token, json: { access_token: s.accessToken }, noteSecrets: false });
      assert.equal(u1.status, 200, u1.text);
      assert.notEqual(u1.json.access_token, s.accessToken);
      assert.equal(s.ep.requests.length, 1);
      // the old token reported again: a newer one exists, no refresh
      const u2 = await request(t, `/v1/connections/${s.conn.id}/unauthorized`, { method: 'POST', token: t.token, json: { access_token: s.accessToken }, noteSecrets: false });
      assert.equal(u2.status, 200);
      assert.equal(u2.json.access_token, u1.json.access_token);
      assert.equal(s.ep.requests.length, 1);
      // no token named, a refresh finished within 5 s: no refresh
      const u3 = await request(t, `/v1/connections/${s.conn.id}/unauthorized`, { method: 'POST', token: t.token, noteSecrets: false });
      assert.equal(u3.status, 200, u3.text);
      assert.equal(u3.json.access_token, u1.json.access_token);
      assert.equal(s.ep.requests.length, 1);
      const ev = await allEvents(t, `kind=refresh&subject=${s.conn.id}`);
      assert.equal(ev.length, 1);
      assert.equal(ev[0].source, 'reactive');
      assert.equal((await request(t, `/v1/connections/${s.conn.id}/unauthorized`, { method: 'POST', token: t.token, json: { access_token: 5 } })).json.field, 'access_token');
    });

    it('rotate then rewrap: connections still refresh; a sealed value copied to another row is a key/data fault, never sent upstream', async () => {
      const s1 = await setup({ behaviour: { kind: 'ok', rotate: true, expiresIn: 3600 } });
      const s2 = await setup({ behaviour: { kind: 'ok', rotate: true, expiresIn: 3600 } });
      const rot = await request(t, '/v1/sys/rotate', { method: 'POST', token: t.token });
      assert.equal(rot.status, 200, rot.text);
      const rw = await request(t, '/v1/sys/rewrap', { method: 'POST', token: t.token });
      assert.equal(rw.status, 202, rw.text);
      assert.ok(rw.json.total >= 4, `the connections' tokens are counted: ${rw.text}`);
      let st;
      for (let i = 0; i < 200; i++) {
        st = (await request(t, '/v1/sys/seal-status')).json.rewrap;
        if (st && st.state === 'done') break;
        await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(st.state, 'done');
      assert.equal(st.failed, 0);
      assert.equal(st.rewrapped, st.total);
      const m = await request(t, `/v1/connections/${s1.conn.id}/refresh`, { method: 'POST', token: t.token });
      assert.equal(m.status, 200, m.text);
      assert.equal(s1.ep.refreshes, 1, 'the rewrapped refresh token and client secret opened and were accepted');
      assert.equal((await getToken(s1.conn.id)).json.access_token, s1.ep.lastAccessToken);

      await storeSql(t, `UPDATE connections SET refresh_token = (SELECT refresh_token FROM connections WHERE id = '${s1.conn.id}') WHERE id = '${s2.conn.id}'`);
      const c = await request(t, `/v1/connections/${s2.conn.id}/refresh`, { method: 'POST', token: t.token });
      assert.equal(c.status, 409, c.text);
      assert.equal(c.json.error, 'needs_reconnect');
      assert.equal(c.json.reason, 'decrypt_failed');
      assert.match(c.json.message, /key\/data fault/);
      assert.equal(s2.ep.requests.length, 0, 'nothing sent upstream');
      const ev = await allEvents(t, `kind=refresh&subject=${s2.conn.id}`);
      assert.equal(ev.length, 1);
      assert.equal(ev[0].outcome, 'failed');
      assert.equal(ev[0].detail.reason, 'decrypt_failed');
      const g = await getToken(s2.conn.id, '?min_ttl=7200');
      assert.equal(g.status, 409, 'no automatic attempt after the fault');
      assert.equal(s2.ep.requests.length, 0);
    });

    it('the CLI lists, shows, gets a token and deletes; then the app can go', async () => {
      const s = await setup();
      const env = { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token };
      const l = await runCli(['connections', 'list', '--app-id', s.app.id], { env });
      assert.equal(l.code, 0, l.stderr);
      assert.ok(l.stdout.includes(s.conn.id));
      const sh = await runCli(['connections', 'show', s.conn.id], { env });
      assert.equal(sh.code, 0, sh.stderr);
      assert.ok(!sh.stdout.includes(s.accessToken));
      const tk = await runCli(['connections', 'token', s.conn.id], { env });
      assert.equal(tk.code, 0, tk.stderr);
      assert.ok(tk.stdout.includes(s.accessToken));
      const d = await runCli(['connections', 'delete', s.conn.id], { env });
      assert.equal(d.code, 0, d.stderr);
      assert.equal((await api(t, `/v1/connections/${s.conn.id}`)).status, 404);
      const da = await request(t, `/v1/provider-apps/${s.app.id}`, { method: 'DELETE', token: t.token });
      assert.equal(da.status, 200, da.text);
    });

    it('action bodies: refresh takes an empty body or {}; unauthorized refuses other members', async () => {
      const s = await setup();
      const r = await request(t, `/v1/connections/${s.conn.id}/refresh`, { method: 'POST', token: t.token, json: { force: true } });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.field, 'force');
      const u = await request(t, `/v1/connections/${s.conn.id}/unauthorized`, { method: 'POST', token: t.token, json: { token: 'x' } });
      assert.equal(u.status, 400, u.text);
      assert.equal(u.json.field, 'token');
      const b = await request(t, `/v1/connections/${s.conn.id}/unauthorized`, { method: 'POST', token: t.token, body: '{"access_token":' });
      assert.equal(b.status, 400, b.text);
      assert.equal((await request(t, '/v1/connections/not-a-uuid/token', { token: t.token })).status, 404);
      assert.equal(s.ep.requests.length, 0);
    });

    it('sealed: 503 sealed; after a restart (auto-unseal) the stored tokens are served again', async () => {
      const s = await setup();
      const seal = await api(t, '/v1/sys/seal', { method: 'POST' });
      assert.equal(seal.status, 200, seal.text);
      const g = await getToken(s.conn.id);
      assert.equal(g.status, 503, g.text);
      assert.equal(g.json.error, 'sealed');
      const res = await t.stop();
      assert.equal(res.code, 0);
      t = await startTokend({ backend, dataDir: t.dataDir, store: t.store, args: ['--refresh-timeout', '10', '--refresh-concurrency', '0'] });
      const g2 = await getToken(s.conn.id);
      assert.equal(g2.status, 200, g2.text);
      assert.equal(g2.json.access_token, s.accessToken);
    });
  });
}
