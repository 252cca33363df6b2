// oauth_token_flow.test.mjs: the token endpoint with every part of the
// authorization server in place (keys, clients, users, authorize): the
// code exchange with PKCE, field report 001's token-stage failures with
// their stage and sentence (PKCE verifier mismatch, a code too old, a code
// used twice), the replay revoking what was issued, refresh rotation and
// reuse, concurrent redemption of one code, client_credentials, the
// introspection and revocation rules, and a revocation on one PostgreSQL
// node seen by introspection on the other within 1 s.
//
// It needs lib/oauthflow.mjs and the other parts: on a branch without them
// the suite is skipped.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { noteSecret } from './lib/secrets.mjs';
import { api, backends, createPgDatabase, freshDir, request, startTokend, stopAndScan, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const flowLib = await import('./lib/oauthflow.mjs').catch(() => null);
const SKIP = flowLib ? false : 'needs lib/oauthflow.mjs and the users and authorize parts';

const CB = 'https://app.example/cb';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

function form(o) {
  return new URLSearchParams(Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))).toString();
}
function basic(c) {
  return `Basic ${Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret)}`).toString('base64')}`;
}
function token(t, params, c) {
  const headers = { ...FORM };
  const body = { ...params };
  if (c?.client_secret) headers.authorization = basic(c);
  else if (c) body.client_id = c.client_id;
  return request(t, '/oauth2/token', { method: 'POST', body: form(body), headers });
}
function introspect(t, tok, c) {
  return request(t, '/oauth2/introspect', { method: 'POST', body: form({ token: tok }), headers: { ...FORM, authorization: basic(c) } });
}
function revoke(t, tok, c) {
  const headers = { ...FORM };
  const body = { token: tok };
  if (c.client_secret) headers.authorization = basic(c);
  else body.client_id = c.client_id;
  return request(t, '/oauth2/revoke', { method: 'POST', body: form(body), headers });
}
function claimsOf(jwt) {
  const [h, p] = jwt.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), claims: JSON.parse(Buffer.from(p, 'base64url')) };
}
function pkcePair() {
  const verifier = crypto.randomBytes(32).toString('base64url');
  return { verifier, challenge: crypto.createHash('sha256').update(verifier).digest('base64url') };
}

async function createScope(t, name) {
  const r = await api(t, '/v1/oauth/scopes', { method: 'POST', json: { name, description: `the ${name} scope` } });
  assert.ok(r.status === 201 || r.status === 409, r.text);
}
async function createClient(t, spec) {
  const r = await api(t, '/v1/oauth/clients', { method: 'POST', json: { name: `c-${crypto.randomBytes(4).toString('hex')}`, ...spec } });
  assert.equal(r.status, 201, r.text);
  const b = r.json.client || r.json;
  const client_secret = r.json.client_secret ?? b.client_secret ?? null;
  if (client_secret) noteSecret(client_secret, { kind: 'oauth client secret' });
  return { id: b.id, client_id: b.client_id, client_secret };
}

/** Scopes, a user (when the users part is there), a public client, a
 * confidential client (all grants) and a resource server client. */
async function setup(t) {
  for (const s of ['notes:read', 'notes:write', 'admin:all']) await createScope(t, s);
  const user = flowLib ? await flowLib.createUser(t) : null;
  const pub = await createClient(t, {
    client_type: 'public',
    application_type: 'web',
    token_endpoint_auth_method: 'none',
    redirect_uris: [CB],
    grant_types: ['authorization_code', 'refresh_token'],
    scopes: ['notes:read', 'notes:write'],
    default_scopes: ['notes:read'],
  });
  const conf = await createClient(t, {
    client_type: 'confidential',
    application_type: 'web',
    token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: [CB],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    scopes: ['notes:read', 'notes:write'],
    default_scopes: ['notes:read'],
    rotate_refresh: false,
  });
  const rs = await createClient(t, {
    client_type: 'confidential',
    application_type: 'web',
    token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: [CB],
    grant_types: ['client_credentials'],
    scopes: ['notes:read'],
    default_scopes: ['notes:read'],
  });
  return { user, pub, conf, rs };
}

/** Run the authorization request through login and consent; the code. */
async function codeFor(t, c, user, { challenge, scope = 'notes:read', resource } = {}) {
  const q = { response_type: 'code', client_id: c.client_id, redirect_uri: CB, state: crypto.randomBytes(6).toString('hex'), scope };
  if (challenge) Object.assign(q, { code_challenge: challenge, code_challenge_method: 'S256' });
  if (resource) q.resource = resource;
  const url = `${t.url}/oauth2/authorize?${new URLSearchParams(q)}`;
  const { callback } = await flowLib.authorizeInBrowser(url, { redirectUri: CB, email: user.email, password: user.password });
  const code = callback.searchParams.get('code');
  assert.ok(code, `a code in ${callback}`);
  return code;
}

async function flowOf(t, clientId) {
  const r = await api(t, `/v1/oauth/flows?client_id=${encodeURIComponent(clientId)}&limit=1`);
  assert.equal(r.status, 200, r.text);
  const f = r.json.flows[0];
  const d = await api(t, `/v1/oauth/flows/${f.id}`);
  assert.equal(d.status, 200, d.text);
  return d.json.flow || d.json;
}

function assertFailed(flow, reason) {
  const s = JSON.stringify(flow);
  assert.equal(flow.status, 'failed', s);
  assert.match(s, /token_exchanged/, `failed at the token exchange: ${s}`);
  assert.ok(s.includes(reason), `the flow's reason names it: ${reason} in ${s}`);
}

for (const backend of backends()) {
  describe(`OAuth token endpoint end to end (${backend})`, { timeout: SUITE_TIMEOUT_MS, skip: SKIP }, () => {
    let t;
    let s;
    before(async () => {
      t = await startTokend({ backend, args: ['--oauth-code-ttl', '2', '--oauth-refresh-grace', '0'] });
      s = await setup(t);
    });
    after(() => stopAndScan(t));

    it('authorization_code with PKCE: RFC 9068 access token, refresh token, flow completed', async () => {
      const { verifier, challenge } = pkcePair();
      const code = await codeFor(t, s.pub, s.user, { challenge, resource: 'https://mcp.example/' });
      const r = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: verifier }, s.pub);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['cache-control'], 'no-store');
      assert.equal(r.json.token_type, 'Bearer');
      assert.equal(r.json.scope, 'notes:read');
      assert.ok(r.json.expires_in > 0);
      assert.match(r.json.refresh_token, /^tkr_/);
      const { header, claims } = claimsOf(r.json.access_token);
      assert.equal(header.typ, 'at+jwt');
      assert.ok(header.kid);
      assert.equal(claims.iss, t.url);
      assert.equal(claims.sub, s.user.id);
      assert.equal(claims.aud, 'https://mcp.example/');
      assert.equal(claims.client_id, s.pub.client_id);
      assert.equal(claims.scope, 'notes:read');
      assert.equal(claims.exp - claims.iat, 3600);
      assert.match(claims.jti, /^[0-9a-f]{32}$/);
      const flow = await flowOf(t, s.pub.client_id);
      assert.equal(flow.status, 'completed', JSON.stringify(flow));
      assert.equal(flow.stage, 'token_issued');
      // introspection by a confidential client of the tenant
      const i = await introspect(t, r.json.access_token, s.rs);
      assert.equal(i.status, 200, i.text);
      assert.equal(i.json.active, true);
      assert.equal(i.json.sub, s.user.id);
      assert.equal(i.json.client_id, s.pub.client_id);
      assert.equal(i.json.token_type, 'Bearer');
    });

    it('field report 001: PKCE verifier mismatch fails at token_exchanged with the sentence; the code stays usable', async () => {
      const { verifier, challenge } = pkcePair();
      const code = await codeFor(t, s.pub, s.user, { challenge });
      const bad = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: pkcePair().verifier }, s.pub);
      assert.equal(bad.status, 400, bad.text);
      assert.equal(bad.json.error, 'invalid_grant');
      assert.equal(bad.json.error_description, 'code_verifier does not match code_challenge');
      assertFailed(await flowOf(t, s.pub.client_id), 'code_verifier does not match code_challenge');
      // PKCE downgrade: no verifier at all
      const none = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB }, s.pub);
      assert.equal(none.json.error, 'invalid_grant');
      assert.match(none.json.error_description, /code_verifier is missing/);
      // redirect_uri with a trailing slash
      const slash = await token(t, { grant_type: 'authorization_code', code, redirect_uri: `${CB}/`, code_verifier: verifier }, s.pub);
      assert.equal(slash.json.error, 'invalid_grant');
      assert.match(slash.json.error_description, /redirect_uri 'https:\/\/app\.example\/cb\/' does not match/);
      const ok = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: verifier }, s.pub);
      assert.equal(ok.status, 200, ok.text);
    });

    it('field report 001: a code older than its ttl fails with "code expired N s ago"', async () => {
      const { verifier, challenge } = pkcePair();
      const code = await codeFor(t, s.pub, s.user, { challenge });
      // poll with a wrong verifier: before the expiry that is refused (and rolls back, the
      // code unspent), after it the expiry is what the answer names
      const wrong = pkcePair().verifier;
      await waitFor(
        async () => {
          const r = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: wrong }, s.pub);
          assert.equal(r.json.error, 'invalid_grant', r.text);
          return /^code expired \d+ s ago$/.test(r.json.error_description);
        },
        { timeoutMs: 20000, intervalMs: 250, message: 'the code to expire (oauth_code_ttl 2)' },
      );
      const late = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: verifier }, s.pub);
      assert.equal(late.status, 400, late.text);
      assert.match(late.json.error_description, /^code expired \d+ s ago$/);
      assertFailed(await flowOf(t, s.pub.client_id), 'code expired');
    });

    it('field report 001: a code used twice revokes what was issued from it', async () => {
      const { verifier, challenge } = pkcePair();
      const code = await codeFor(t, s.conf, s.user, { challenge });
      const first = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: verifier }, s.conf);
      assert.equal(first.status, 200, first.text);
      assert.equal((await introspect(t, first.json.access_token, s.rs)).json.active, true);
      const again = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: verifier }, s.conf);
      assert.equal(again.status, 400, again.text);
      assert.equal(again.json.error, 'invalid_grant');
      assert.match(again.json.error_description, /^code already used at \d\d:\d\d:\d\d; tokens issued from it were revoked$/);
      assertFailed(await flowOf(t, s.conf.client_id), 'code already used at');
      // the access token and the refresh token issued from it are dead
      assert.deepEqual((await introspect(t, first.json.access_token, s.rs)).json, { active: false });
      const rr = await token(t, { grant_type: 'refresh_token', refresh_token: first.json.refresh_token }, s.conf);
      assert.equal(rr.json.error, 'invalid_grant');
      assert.match(rr.json.error_description, /revoked/);
    });

    it('concurrent redemption of one code: exactly one wins', async () => {
      const { verifier, challenge } = pkcePair();
      const code = await codeFor(t, s.pub, s.user, { challenge });
      const res = await Promise.all(Array.from({ length: 8 }, () => token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: verifier }, s.pub)));
      const wins = res.filter((r) => r.status === 200);
      assert.equal(wins.length, 1, res.map((r) => `${r.status} ${r.text}`).join('\n'));
      for (const r of res.filter((x) => x.status !== 200)) {
        assert.equal(r.json.error, 'invalid_grant', r.text);
        assert.match(r.json.error_description, /code already used at/);
      }
      // the replays revoked the winner's tokens too (RFC 6749 §4.1.2)
      assert.deepEqual((await introspect(t, wins[0].json.access_token, s.rs)).json, { active: false });
    });

    it('refresh: rotation for a public client, reuse of a rotated token revokes the family', async () => {
      const { verifier, challenge } = pkcePair();
      const code = await codeFor(t, s.pub, s.user, { challenge, scope: 'notes:read notes:write' });
      const first = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: verifier }, s.pub);
      assert.equal(first.status, 200, first.text);
      const r1 = await token(t, { grant_type: 'refresh_token', refresh_token: first.json.refresh_token, scope: 'notes:read' }, s.pub);
      assert.equal(r1.status, 200, r1.text);
      assert.equal(r1.json.scope, 'notes:read', 'narrowed');
      assert.match(r1.json.refresh_token, /^tkr_/);
      assert.notEqual(r1.json.refresh_token, first.json.refresh_token);
      // widening is refused
      const wide = await token(t, { grant_type: 'refresh_token', refresh_token: r1.json.refresh_token, scope: 'admin:all' }, s.pub);
      assert.equal(wide.json.error, 'invalid_scope', wide.text);
      assert.match(wide.json.error_description, /scope 'admin:all' is not allowed/);
      const reuse = await token(t, { grant_type: 'refresh_token', refresh_token: first.json.refresh_token }, s.pub);
      assert.equal(reuse.json.error, 'invalid_grant', reuse.text);
      assert.match(reuse.json.error_description, /^refresh token was already rotated at .*; its family was revoked$/);
      const after = await token(t, { grant_type: 'refresh_token', refresh_token: r1.json.refresh_token }, s.pub);
      assert.equal(after.json.error, 'invalid_grant');
      assert.deepEqual((await introspect(t, r1.json.access_token, s.rs)).json, { active: false });
    });

    it('refresh without rotation for a confidential client that turned it off', async () => {
      const { verifier, challenge } = pkcePair();
      const code = await codeFor(t, s.conf, s.user, { challenge });
      const first = await token(t, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: verifier }, s.conf);
      assert.equal(first.status, 200, first.text);
      for (let i = 0; i < 2; i++) {
        const r = await token(t, { grant_type: 'refresh_token', refresh_token: first.json.refresh_token }, s.conf);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.refresh_token, undefined, 'the same refresh token stays');
      }
      // another client cannot use it
      const other = await token(t, { grant_type: 'refresh_token', refresh_token: first.json.refresh_token }, s.pub);
      assert.equal(other.status, 400);
    });

  });
}

for (const backend of backends()) {
  describe(`client_credentials, introspection, revocation (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let s;
    before(async () => {
      t = await startTokend({ backend });
      s = await setup(t);
    });
    after(() => stopAndScan(t));

    it('client_credentials: default scopes, a subset, invalid_scope naming the allowed ones, public clients refused', async () => {
      const r = await token(t, { grant_type: 'client_credentials' }, s.conf);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.scope, 'notes:read');
      assert.equal(r.json.refresh_token, undefined);
      const { claims } = claimsOf(r.json.access_token);
      assert.equal(claims.sub, s.conf.client_id);
      assert.equal(claims.aud, s.conf.client_id);
      const aud = await token(t, { grant_type: 'client_credentials', scope: 'notes:write', resource: 'https://api.example/' }, s.conf);
      assert.equal(aud.status, 200, aud.text);
      assert.equal(claimsOf(aud.json.access_token).claims.aud, 'https://api.example/');
      const bad = await token(t, { grant_type: 'client_credentials', scope: 'admin:all' }, s.conf);
      assert.equal(bad.json.error, 'invalid_scope');
      assert.equal(bad.json.error_description, "scope 'admin:all' is not allowed for this client; allowed: notes:read notes:write");
      const pub = await token(t, { grant_type: 'client_credentials' }, s.pub);
      assert.equal(pub.json.error, 'unauthorized_client', pub.text);
      const frag = await token(t, { grant_type: 'client_credentials', resource: 'https://api.example/#x' }, s.conf);
      assert.equal(frag.json.error, 'invalid_target');
    });

    it('introspection and revocation rules: own tokens only, 200 for unknown, revoked access tokens inactive', async () => {
      const r = await token(t, { grant_type: 'client_credentials' }, s.conf);
      const at = r.json.access_token;
      assert.equal((await introspect(t, at, s.rs)).json.active, true);
      // a public client may not introspect
      const pi = await request(t, '/oauth2/introspect', { method: 'POST', body: form({ token: at, client_id: s.pub.client_id }), headers: FORM });
      assert.equal(pi.status, 401, pi.text);
      // another client may not revoke it
      const other = await revoke(t, at, s.rs);
      assert.equal(other.status, 400, other.text);
      assert.equal(other.json.error, 'unauthorized_client');
      assert.equal((await introspect(t, at, s.rs)).json.active, true);
      // unknown and garbage tokens: 200
      assert.equal((await revoke(t, 'nope', s.conf)).status, 200);
      assert.equal((await revoke(t, `tkr_${'a'.repeat(36)}`, s.conf)).status, 200);
      assert.deepEqual((await introspect(t, 'garbage', s.rs)).json, { active: false });
      const ok = await revoke(t, at, s.conf);
      assert.equal(ok.status, 200, ok.text);
      assert.deepEqual((await introspect(t, at, s.rs)).json, { active: false });
    });
  });
}

const hasPg = backends().includes('postgres');

describe('revocation across two PostgreSQL nodes, end to end (postgres)', { timeout: SUITE_TIMEOUT_MS, skip: hasPg ? false : 'needs TOKEND_TEST_PG (tests/with-postgres.sh)' }, () => {
  let a;
  let b;
  let s;
  before(async () => {
    const store = await createPgDatabase();
    a = await startTokend({ backend: 'postgres', store, args: ['--node-name', 'node-a'] });
    const dir = await freshDir('node-b');
    await copyFile(path.join(a.dataDir, 'unseal.key'), path.join(dir, 'unseal.key'));
    b = await startTokend({ backend: 'postgres', store, dataDir: dir, args: ['--node-name', 'node-b'], allowNoRootToken: true });
    b.token = a.token;
    s = await setup(a);
  });
  after(async () => {
    await Promise.all([stopAndScan(a), stopAndScan(b)]);
  });

  it('a token revoked on node A is inactive at node B within 1 s; a refresh family too', async () => {
    const r = await token(a, { grant_type: 'client_credentials' }, s.conf);
    assert.equal(r.status, 200, r.text);
    await waitFor(async () => (await introspect(b, r.json.access_token, s.rs)).json.active === true, { timeoutMs: 10000, message: 'node B knows the key and client' });
    assert.equal((await revoke(a, r.json.access_token, s.conf)).status, 200);
    const t0 = Date.now();
    await waitFor(async () => (await introspect(b, r.json.access_token, s.rs)).json.active === false, { timeoutMs: 5000, intervalMs: 25, message: 'node B sees the revocation' });
    assert.ok(Date.now() - t0 < 1000, `node B took ${Date.now() - t0} ms`);
    if (!flowLib) return; // the refresh family needs a code flow (users and authorize parts)

    const { verifier, challenge } = pkcePair();
    const code = await codeFor(a, s.pub, s.user, { challenge });
    const x = await token(a, { grant_type: 'authorization_code', code, redirect_uri: CB, code_verifier: verifier }, s.pub);
    assert.equal(x.status, 200, x.text);
    assert.equal((await introspect(b, x.json.access_token, s.rs)).json.active, true);
    assert.equal((await revoke(b, x.json.refresh_token, s.pub)).status, 200);
    const t1 = Date.now();
    await waitFor(async () => (await introspect(a, x.json.access_token, s.rs)).json.active === false, { timeoutMs: 5000, intervalMs: 25, message: 'node A sees the family revoked' });
    assert.ok(Date.now() - t1 < 1000, `node A took ${Date.now() - t1} ms`);
  });
});
