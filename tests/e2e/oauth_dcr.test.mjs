// oauth_dcr.test.mjs: dynamic client registration (RFC 7591) and its
// management (RFC 7592) at /oauth2/register, under each oauth_dcr mode:
// token (the default: an operator token of the tenant with a write role),
// open (anybody, into the default tenant: MCP clients), off (404). Unknown
// metadata is ignored; http://evil.example/cb is invalid_redirect_uri; a
// scope outside the catalogue is invalid_client_metadata; the registration
// access token reads, updates and deletes its own client only; the
// per-address rate limit and the per-tenant cap; events of kind oauth.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  allEvents,
  api,
  backends,
  createTenant,
  metric,
  request,
  scrape,
  startTokend,
  stopAndScan,
  SUITE_TIMEOUT_MS,
} from './lib/tokend.mjs';

function register(t, json, token) {
  return request(t, '/oauth2/register', { method: 'POST', json, ...(token ? { token } : {}) });
}

function clientAuth(t, form, headers = {}) {
  return request(t, '/oauth2/test/client-auth', {
    method: 'POST',
    body: new URLSearchParams(form).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
  });
}

for (const backend of backends()) {
  describe(`dynamic registration, oauth_dcr token (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend, args: ['--auth-fail-limit', '0', '--oauth-dcr-max-clients', '4'] });
      for (const name of ['mcp:tools', 'read'])
        assert.equal((await api(t, '/v1/oauth/scopes', { method: 'POST', json: { name } })).status, 201);
    });
    after(async () => {
      if (t) await stopAndScan(t);
    });

    let reg;
    it('an operator token registers a confidential client; unknown metadata is ignored', async () => {
      const r = await register(
        t,
        {
          client_name: 'Agent',
          redirect_uris: ['https://agent.example/cb'],
          scope: 'read mcp:tools',
          logo_uri: 'https://agent.example/logo.png',
          software_statement: 'eyJ...',
          tos_uri: 'https://agent.example/tos',
          'x-vendor': { nested: [1, 2, 3] },
        },
        t.token,
      );
      assert.equal(r.status, 201, r.text);
      assert.match(r.headers['cache-control'], /no-store/);
      assert.match(r.json.client_id, /^[0-9a-f-]{36}$/);
      assert.match(r.json.client_secret, /^tks_/);
      assert.equal(r.json.client_secret_expires_at, 0);
      assert.match(r.json.registration_access_token, /^tkg_/);
      assert.equal(r.json.registration_client_uri, `${t.url}/oauth2/register/${r.json.client_id}`);
      assert.ok(Number.isInteger(r.json.client_id_issued_at) && r.json.client_id_issued_at > 1.7e9);
      assert.equal(r.json.token_endpoint_auth_method, 'client_secret_basic');
      assert.deepEqual(r.json.grant_types, ['authorization_code']);
      assert.deepEqual(r.json.response_types, ['code']);
      assert.equal(r.json.scope, 'read mcp:tools');
      assert.equal(r.json.client_name, 'Agent');
      assert.equal(r.json.logo_uri, undefined);
      assert.equal(r.json.software_statement, undefined);
      reg = r.json;
      // an operator sees it, with origin dynamic
      const l = await api(t, '/v1/oauth/clients');
      const c = l.json.clients.find((x) => x.client_id === reg.client_id);
      assert.equal(c.origin, 'dynamic');
      assert.deepEqual(c.default_scopes, ['read', 'mcp:tools']);
      // and it authenticates
      const a = await clientAuth(t, {}, { authorization: 'Basic ' + Buffer.from(`${reg.client_id}:${reg.client_secret}`).toString('base64') });
      assert.equal(a.status, 200, a.text);
    });

    it('token mode: no token, a bad token, a viewer token are 401 invalid_token', async () => {
      const body = { redirect_uris: ['https://x.example/cb'] };
      let r = await register(t, body);
      assert.equal(r.status, 401, r.text);
      assert.equal(r.json.error, 'invalid_token');
      assert.match(r.headers['www-authenticate'], /Bearer/);
      r = await register(t, body, 'tko_garbage');
      assert.equal(r.status, 401);
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'v', role: 'viewer' } });
      r = await register(t, body, v.json.token);
      assert.equal(r.status, 401, r.text);
      assert.match(r.json.error_description, /admin or operator/);
    });

    it('refused metadata: invalid_redirect_uri and invalid_client_metadata', async () => {
      const cases = [
        [{ redirect_uris: ['http://evil.example/cb'] }, 'invalid_redirect_uri'],
        [{ redirect_uris: ['https://x.example/cb#f'] }, 'invalid_redirect_uri'],
        [{ redirect_uris: ['javascript:alert(1)'] }, 'invalid_redirect_uri'],
        [{ redirect_uris: [] }, 'invalid_redirect_uri'],
        [{ redirect_uris: 'https://x.example/cb' }, 'invalid_redirect_uri'],
        [{ redirect_uris: ['https://x.example/cb'], scope: 'admin:all' }, 'invalid_client_metadata'],
        [{ redirect_uris: ['https://x.example/cb'], grant_types: ['password'] }, 'invalid_client_metadata'],
        [{ redirect_uris: ['https://x.example/cb'], response_types: ['token'] }, 'invalid_client_metadata'],
        [{ redirect_uris: ['https://x.example/cb'], token_endpoint_auth_method: 'private_key_jwt' }, 'invalid_client_metadata'],
        [{ redirect_uris: ['https://x.example/cb'], token_endpoint_auth_method: 'none', grant_types: ['client_credentials'] }, 'invalid_client_metadata'],
        [{ redirect_uris: ['https://x.example/cb'], client_name: 42 }, 'invalid_client_metadata'],
        [{ redirect_uris: ['https://x.example/cb'], application_type: 'fridge' }, 'invalid_client_metadata'],
      ];
      for (const [body, error] of cases) {
        const r = await register(t, body, t.token);
        assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
        assert.equal(r.json.error, error, `${JSON.stringify(body)}: ${r.text}`);
        assert.ok(r.json.error_description, r.text);
        assert.equal(r.json.message, undefined);
      }
      for (const raw of ['', 'not json', '[1,2]', '{"a":1,"a":2}']) {
        const r = await request(t, '/oauth2/register', { method: 'POST', body: raw, token: t.token });
        assert.equal(r.status, 400, `${raw}: ${r.text}`);
        assert.equal(r.json.error, 'invalid_client_metadata');
      }
    });

    it('RFC 7592: read, update, delete with the registration access token only', async () => {
      const uri = `/oauth2/register/${reg.client_id}`;
      let r = await request(t, uri, { token: reg.registration_access_token });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.client_id, reg.client_id);
      assert.equal(r.json.client_secret, undefined);
      // wrong tokens
      for (const tok of [undefined, t.token, reg.client_secret, 'tkg_' + 'A'.repeat(36)]) {
        r = await request(t, uri, tok ? { token: tok } : {});
        assert.equal(r.status, 401, `${tok}: ${r.text}`);
        assert.equal(r.json.error, 'invalid_token');
      }
      // another client's id with this token
      const other = await register(t, { redirect_uris: ['https://o.example/cb'], token_endpoint_auth_method: 'none' }, t.token);
      assert.equal(other.status, 201, other.text);
      assert.equal(other.json.client_secret, undefined);
      r = await request(t, `/oauth2/register/${other.json.client_id}`, { token: reg.registration_access_token });
      assert.equal(r.status, 401);
      // update: replaces the metadata; unknown members ignored; bad ones refused
      r = await request(t, uri, {
        method: 'PUT',
        token: reg.registration_access_token,
        json: { client_id: reg.client_id, client_name: 'Agent 2', redirect_uris: ['https://agent.example/cb2'], scope: 'read', whatever: true },
      });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.client_name, 'Agent 2');
      assert.deepEqual(r.json.redirect_uris, ['https://agent.example/cb2']);
      assert.equal(r.json.scope, 'read');
      r = await request(t, uri, { method: 'PUT', token: reg.registration_access_token, json: { redirect_uris: ['http://evil.example/cb'] } });
      assert.equal(r.status, 400);
      assert.equal(r.json.error, 'invalid_redirect_uri');
      r = await request(t, uri, { method: 'PUT', token: reg.registration_access_token, json: { client_id: other.json.client_id, redirect_uris: ['https://agent.example/cb'] } });
      assert.equal(r.status, 400);
      // delete: 204, then the token and the client are gone
      r = await request(t, uri, { method: 'DELETE', token: reg.registration_access_token });
      assert.equal(r.status, 204, r.text);
      r = await request(t, uri, { token: reg.registration_access_token });
      assert.equal(r.status, 401);
      const a = await clientAuth(t, {}, { authorization: 'Basic ' + Buffer.from(`${reg.client_id}:${reg.client_secret}`).toString('base64') });
      assert.equal(a.status, 401);
    });

    it("a registration lands in the token's tenant; another tenant cannot see it", async () => {
      const ten = await createTenant(t);
      const r = await register(t, { redirect_uris: ['https://t2.example/cb'] }, ten.token);
      assert.equal(r.status, 201, r.text);
      let g = await request(t, `/v1/oauth/clients/${r.json.client_id}`, { token: ten.token });
      assert.equal(g.status, 200);
      g = await api(t, `/v1/oauth/clients/${r.json.client_id}`);
      assert.equal(g.status, 404);
      // the other tenant's catalogue is empty: a scope is refused there
      const s = await register(t, { redirect_uris: ['https://t2.example/cb'], scope: 'read' }, ten.token);
      assert.equal(s.status, 400);
      assert.equal(s.json.error, 'invalid_client_metadata');
    });

    it('the per-tenant cap (oauth_dcr_max_clients 4) and events', async () => {
      let last;
      for (let i = 0; i < 5; i++) {
        last = await register(t, { redirect_uris: ['https://cap.example/cb'] }, t.token);
        if (last.status !== 201) break;
      }
      assert.equal(last.status, 403, last.text);
      assert.equal(last.json.error, 'registration_limit');
      const evs = await allEvents(t, '?kind=oauth');
      const ok = evs.filter((e) => e.action === 'register' && e.outcome === 'ok');
      assert.ok(ok.length >= 3);
      assert.ok(ok.every((e) => e.subject_type === 'oauth_client'));
      assert.ok(evs.some((e) => e.action === 'register' && e.outcome === 'denied'));
      assert.ok(evs.some((e) => e.action === 'registration_update' && e.outcome === 'ok'));
      assert.ok(evs.some((e) => e.action === 'registration_delete' && e.outcome === 'ok'));
      const m = await scrape(t);
      assert.ok(metric(m, 'tokend_oauth_registrations_total', { result: 'created' }) >= 3);
      assert.ok(metric(m, 'tokend_oauth_registrations_total', { result: 'refused' }) >= 1);
    });
  });

  describe(`dynamic registration, oauth_dcr open and off (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let open, off;
    before(async () => {
      open = await startTokend({ backend, args: ['--oauth-dcr', 'open', '--oauth-dcr-rate', '8'] });
      off = await startTokend({ backend, args: ['--oauth-dcr', 'off'] });
    });
    after(async () => {
      if (open) await stopAndScan(open);
      if (off) await stopAndScan(off);
    });

    it('open: an MCP client registers without a token, as a public native client', async () => {
      const r = await register(open, {
        client_name: 'MCP Inspector',
        redirect_uris: ['http://localhost:6274/oauth/callback', 'http://127.0.0.1:6274/oauth/callback'],
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        client_uri: 'https://github.com/modelcontextprotocol/inspector',
      });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.json.client_secret, undefined);
      assert.equal(r.json.client_secret_expires_at, undefined);
      assert.equal(r.json.application_type, 'native');
      assert.match(r.json.registration_access_token, /^tkg_/);
      const c = await api(open, `/v1/oauth/clients/${r.json.client_id}`);
      assert.equal(c.status, 200, 'in the default tenant');
      assert.equal(c.json.client_type, 'public');
      const a = await clientAuth(open, { client_id: r.json.client_id });
      assert.equal(a.status, 200, a.text);
      // still no http to a real host
      const e = await register(open, { redirect_uris: ['http://evil.example/cb'], token_endpoint_auth_method: 'none' });
      assert.equal(e.status, 400);
      assert.equal(e.json.error, 'invalid_redirect_uri');
    });

    it('open: registrations from one address are rate-limited (429 + Retry-After)', async () => {
      let last;
      for (let i = 0; i < 12; i++) {
        last = await register(open, { redirect_uris: ['https://flood.example/cb'], token_endpoint_auth_method: 'none' });
        if (last.status === 429) break;
      }
      assert.equal(last.status, 429, last.text);
      assert.equal(last.json.error, 'rate_limited');
      assert.ok(Number(last.headers['retry-after']) >= 1);
      const m = await scrape(open);
      assert.ok(metric(m, 'tokend_oauth_registrations_total', { result: 'rate_limited' }) >= 1);
    });

    it('off: 404 for registration and management', async () => {
      let r = await register(off, { redirect_uris: ['https://x.example/cb'] }, off.token);
      assert.equal(r.status, 404, r.text);
      assert.equal(r.json.error, 'not_found');
      r = await request(off, '/oauth2/register/0190a000-0000-7000-8000-000000000099', { token: 'tkg_x' });
      assert.equal(r.status, 404);
    });
  });
}
