// oauth_token.test.mjs: the token part of the authorization server (issue
// 15 items 4 and 5) as far as it stands alone: the RFC 8414 metadata, the
// RFC 6749 §5.2 errors of /oauth2/token, /oauth2/introspect and
// /oauth2/revoke for bad requests (no-store on every answer), hostile form
// bodies, the metrics, and the revocation set kept current across two
// PostgreSQL nodes.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { backends, createPgDatabase, freshDir, metric, psql, request, scrape, startTokend, stopAndScan, storeSql, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

function post(t, pathname, body, headers = {}) {
  return request(t, pathname, { method: 'POST', body, headers: { ...FORM, ...headers } });
}

function assertOAuthError(r, status, error, descriptionRe) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.headers['cache-control'], 'no-store', 'no-store on every answer');
  assert.equal(r.headers.pragma, 'no-cache');
  assert.equal(r.json.error, error, r.text);
  if (descriptionRe) assert.match(r.json.error_description, descriptionRe);
  // RFC 6749 §5.2 shape: no /v1 members
  assert.equal(r.json.message, undefined);
  assert.equal(r.json.request_id, undefined);
}

for (const backend of backends()) {
  describe(`OAuth token endpoint, introspection, revocation, metadata (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let p;
    before(async () => {
      t = await startTokend({ backend });
      p = await startTokend({ backend, args: ['--public-url', 'https://as.example.com/tokend', '--allowed-hosts', 'as.example.com'] });
    });
    after(async () => {
      await Promise.all([stopAndScan(t), stopAndScan(p)]);
    });

    it('publishes RFC 8414 metadata at both well-known paths: issuer = public_url, only what works', async () => {
      for (const wk of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
        const r = await request(p, wk);
        assert.equal(r.status, 200, r.text);
        assert.match(r.headers['content-type'], /^application\/json/);
        assert.match(r.headers['cache-control'], /^public, max-age=\d+$/);
        const m = r.json;
        const base = 'https://as.example.com/tokend';
        assert.equal(m.issuer, base);
        assert.equal(m.authorization_endpoint, `${base}/oauth2/authorize`);
        assert.equal(m.token_endpoint, `${base}/oauth2/token`);
        assert.equal(m.jwks_uri, `${base}/oauth2/jwks`);
        assert.equal(m.introspection_endpoint, `${base}/oauth2/introspect`);
        assert.equal(m.revocation_endpoint, `${base}/oauth2/revoke`);
        assert.equal(m.registration_endpoint, `${base}/oauth2/register`);
        assert.deepEqual(m.response_types_supported, ['code']);
        assert.deepEqual(m.code_challenge_methods_supported, ['S256'], 'plain is never advertised');
        assert.deepEqual(m.grant_types_supported, ['authorization_code', 'refresh_token', 'client_credentials']);
        assert.deepEqual(m.token_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post', 'none']);
        assert.deepEqual(m.introspection_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post']);
        assert.equal(m.authorization_response_iss_parameter_supported, true);
        assert.equal(m.client_id_metadata_document_supported, true);
        // nothing of OpenID Connect that tokend does not do
        for (const k of ['id_token_signing_alg_values_supported', 'userinfo_endpoint', 'subject_types_supported', 'scopes_supported', 'claims_supported'])
          assert.equal(m[k], undefined, k);
        assert.ok(!m.response_types_supported.includes('id_token'));
      }
      const d = await request(t, '/.well-known/oauth-authorization-server');
      assert.equal(d.status, 200);
      assert.equal(d.json.issuer, t.url, 'derived public_url without a trailing slash');
    });

    it('no registration_endpoint with oauth_dcr off, no client_id_metadata_document_supported with oauth_cimd off', async () => {
      const off = await startTokend({ backend, env: { TOKEND_OAUTH_DCR: 'off', TOKEND_OAUTH_CIMD: 'false' } });
      try {
        const r = await request(off, '/.well-known/oauth-authorization-server');
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.registration_endpoint, undefined);
        assert.equal(r.json.client_id_metadata_document_supported, undefined);
        assert.equal(r.json.token_endpoint, `${off.url}/oauth2/token`);
      } finally {
        await stopAndScan(off);
      }
    });

    it('POST /oauth2/token: grant_type missing or unknown, before any client authentication', async () => {
      const node = p;
      assertOAuthError(await post(node, '/oauth2/token', ''), 400, 'invalid_request', /grant_type is missing/);
      assertOAuthError(await post(node, '/oauth2/token', 'grant_type='), 400, 'invalid_request', /grant_type is missing/);
      assertOAuthError(await post(node, '/oauth2/token', 'grant_type=password&username=a&password=b'), 400, 'unsupported_grant_type', /'password' is not supported; supported: authorization_code, refresh_token, client_credentials/);
      assertOAuthError(await post(node, '/oauth2/token', 'grant_type=implicit'), 400, 'unsupported_grant_type');
      assertOAuthError(await post(node, '/oauth2/token', 'grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code'), 400, 'unsupported_grant_type');
      // a known grant without a client: invalid_client (the clients part decides how)
      const r = await post(node, '/oauth2/token', 'grant_type=client_credentials');
      assert.equal(r.status, 401, r.text);
      assert.equal(r.json.error, 'invalid_client');
      assert.equal(r.headers['cache-control'], 'no-store');
    });

    it('hostile form bodies: duplicate parameters, bad escapes, too many pairs, wrong media type', async () => {
      const node = p;
      // RFC 6749 §3.2: a parameter given twice
      assertOAuthError(await post(node, '/oauth2/token', 'grant_type=client_credentials&grant_type=refresh_token'), 400, 'invalid_request', /grant_type/);
      assertOAuthError(await post(node, '/oauth2/token', 'grant_type=a%zz'), 400, 'invalid_request', /grant_type/);
      assertOAuthError(await post(node, '/oauth2/token', 'grant_type=a%00b'), 400, 'invalid_request');
      assertOAuthError(await post(node, '/oauth2/token', 'grant_type=%C3%28'), 400, 'invalid_request');
      assertOAuthError(await post(node, '/oauth2/token', `${'x'.repeat(200)}=1`), 400, 'invalid_request');
      const many = Array.from({ length: 65 }, (_, i) => `p${i}=1`).join('&');
      assertOAuthError(await post(node, '/oauth2/token', many), 400, 'invalid_request');
      for (const ep of ['/oauth2/introspect', '/oauth2/revoke'])
        assertOAuthError(await post(node, ep, 'token=a&token=b'), 400, 'invalid_request', /token/);
      // JSON instead of a form, or no Content-Type
      const j = await request(node, '/oauth2/token', { method: 'POST', json: { grant_type: 'client_credentials' } });
      assertOAuthError(j, 400, 'invalid_request', /application\/x-www-form-urlencoded \(RFC 6749\), not application\/json/);
      const none = await request(node, '/oauth2/revoke', { method: 'POST', body: 'token=x', headers: { 'content-type': null } });
      assertOAuthError(none, 400, 'invalid_request', /without a Content-Type/);
      // a charset parameter is fine
      assertOAuthError(await post(node, '/oauth2/token', 'grant_type=password', { 'content-type': 'application/x-www-form-urlencoded; charset=UTF-8' }), 400, 'unsupported_grant_type');
      // GET is not a token request
      assert.equal((await request(node, '/oauth2/token')).status, 405);
      // the secret scan: nothing of what was sent is logged as a token
      const still = await request(node, '/health');
      assert.equal(still.status, 200);
    });

    it('introspect and revoke: token missing is invalid_request; a request without client is invalid_client', async () => {
      for (const ep of ['/oauth2/introspect', '/oauth2/revoke']) {
        assertOAuthError(await post(t, ep, ''), 400, 'invalid_request', /token is missing/);
        assertOAuthError(await post(t, ep, 'token_type_hint=access_token'), 400, 'invalid_request', /token is missing/);
        const r = await post(t, ep, 'token=tkr_x');
        assert.equal(r.status, 401, r.text);
        assert.equal(r.json.error, 'invalid_client');
      }
    });

    it('counts answers in tokend_oauth_tokens_total{grant,outcome}', async () => {
      const before = await scrape(p);
      const b0 = metric(before, 'tokend_oauth_tokens_total', { grant: 'other', outcome: 'unsupported_grant_type' });
      assert.equal((await post(p, '/oauth2/token', 'grant_type=password')).status, 400);
      assert.equal((await post(p, '/oauth2/token', 'grant_type=password')).status, 400);
      const m = await scrape(p);
      assert.equal(metric(m, 'tokend_oauth_tokens_total', { grant: 'other', outcome: 'unsupported_grant_type' }), b0 + 2);
      for (const name of ['tokend_oauth_tokens_total', 'tokend_oauth_introspections_total', 'tokend_oauth_revocations_total', 'tokend_oauth_revocation_set_entries'])
        assert.ok(m.some((s) => s.name === name), `${name} is exported`);
      assert.ok(m.some((s) => s.name === 'tokend_oauth_introspections_total' && s.labels.active === 'false'));
      assert.ok(m.some((s) => s.name === 'tokend_oauth_revocations_total' && s.labels.outcome === 'revoked'));
    });

    it('the revocation set loads the unexpired revocation rows and drops the expired ones', async () => {
      const tenant = (await storeSql(t, "SELECT id FROM tenants WHERE name = 'default'")).trim();
      assert.ok(tenant);
      const now = Date.now();
      const before = metric(await scrape(t), 'tokend_oauth_revocation_set_entries');
      // rows another node would write (ids in UUIDv7 order)
      const id = (ms, n) => `${ms.toString(16).padStart(12, '0').replace(/^(.{8})(.{4})$/, '$1-$2')}-7000-8000-${String(n).padStart(12, '0')}`;
      await storeSql(t, `INSERT INTO oauth_revocations (id, tenant_id, what, value, created_at, expires_at) VALUES ('${id(now, 1)}', '${tenant}', 'jti', 'e2e-jti-1', ${now}, ${now + 600000}), ('${id(now, 2)}', '${tenant}', 'family', 'e2e-fam-1', ${now}, ${now + 600000})`);
      await waitFor(async () => metric(await scrape(t), 'tokend_oauth_revocation_set_entries') === before + 2, { timeoutMs: 10000, message: 'the poller read both rows' });
    });

    it('the metadata answers while sealed (and the token endpoint does not)', async () => {
      const s = await request(t, '/v1/sys/seal', { method: 'POST', token: t.token });
      assert.equal(s.status, 200, s.text);
      const r = await request(t, '/.well-known/oauth-authorization-server');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.issuer, t.url);
      assert.equal((await request(t, '/.well-known/openid-configuration')).status, 200);
      assert.equal((await post(t, '/oauth2/token', 'grant_type=client_credentials')).status, 503);
    });
  });
}

const hasPg = backends().includes('postgres');

describe('the revocation set across two PostgreSQL nodes (postgres)', { timeout: SUITE_TIMEOUT_MS, skip: hasPg ? false : 'needs TOKEND_TEST_PG (tests/with-postgres.sh)' }, () => {
  let a;
  let b;
  before(async () => {
    const store = await createPgDatabase();
    a = await startTokend({ backend: 'postgres', store, args: ['--node-name', 'node-a'] });
    const dir = await freshDir('node-b');
    await copyFile(path.join(a.dataDir, 'unseal.key'), path.join(dir, 'unseal.key'));
    b = await startTokend({ backend: 'postgres', store, dataDir: dir, args: ['--node-name', 'node-b'], allowNoRootToken: true });
    b.token = a.token;
  });
  after(async () => {
    await Promise.all([stopAndScan(a), stopAndScan(b)]);
  });

  it('a revocation row written through one node reaches the other node\'s set within 1 s', async () => {
    const tenant = (await psql("SELECT id FROM tenants WHERE name = 'default'", a.store)).trim();
    const eb = metric(await scrape(b), 'tokend_oauth_revocation_set_entries');
    const now = Date.now();
    const hex = now.toString(16).padStart(12, '0');
    const id = `${hex.slice(0, 8)}-${hex.slice(8)}-7000-8000-000000000001`;
    await psql(`INSERT INTO oauth_revocations (id, tenant_id, what, value, created_at, expires_at) VALUES ('${id}', '${tenant}', 'jti', 'mn-jti-1', ${now}, ${now + 600000})`, a.store);
    const t0 = Date.now();
    await waitFor(async () => metric(await scrape(b), 'tokend_oauth_revocation_set_entries') === eb + 1, { timeoutMs: 5000, intervalMs: 20, message: 'node b read the row' });
    assert.ok(Date.now() - t0 < 1500, `node b took ${Date.now() - t0} ms`);
    // a row committed late with an older id (another node's clock) is read too
    const late = now - 3000;
    const lh = late.toString(16).padStart(12, '0');
    const lid = `${lh.slice(0, 8)}-${lh.slice(8)}-7000-8000-000000000002`;
    await psql(`INSERT INTO oauth_revocations (id, tenant_id, what, value, created_at, expires_at) VALUES ('${lid}', '${tenant}', 'family', 'mn-fam-late', ${late}, ${now + 600000})`, a.store);
    await waitFor(async () => metric(await scrape(b), 'tokend_oauth_revocation_set_entries') === eb + 2, { timeoutMs: 5000, intervalMs: 20, message: 'node b read the late row' });
  });
});
