// oauthflows.mjs: what the authorization endpoint's suites share: an OAuth
// client row planted with storeSql (migration 0011's columns), a request to
// /oauth2/authorize, and the newest flow of a client.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { api, request, storeSql, uniqueId } from './tokend.mjs';

export function uuid7() {
  const b = crypto.randomBytes(16);
  b.writeUIntBE(Date.now(), 0, 6);
  b[6] = 0x70 | (b[6] & 0x0f);
  b[8] = 0x80 | (b[8] & 0x3f);
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const q = (s) => `'${String(s).replace(/'/g, "''")}'`;

export async function tenantOf(t, token = t.token) {
  const r = await api(t, '/v1/whoami', { token });
  assert.equal(r.status, 200, r.text);
  return r.json.tenant_id;
}

/** Plant an OAuth client; resolves to {id, clientId, ...}. */
export async function addClient(t, tenantId, o = {}) {
  const c = {
    id: uuid7(),
    clientId: o.clientId || uniqueId('client'),
    type: o.type || 'public',
    app: o.app || 'web',
    redirect: o.redirect || ['https://app.example/cb'],
    grants: o.grants || ['authorization_code', 'refresh_token'],
    scopes: o.scopes || ['dcr.create'],
    defaults: o.defaults || ['dcr.create'],
    status: o.status || 'active',
  };
  const j = (v) => q(JSON.stringify(v));
  await storeSql(
    t,
    (t.backend === 'postgres' ? '' : 'PRAGMA busy_timeout = 10000; ') +
      'INSERT INTO oauth_clients (id, tenant_id, client_id, name, client_type, application_type, ' +
      'token_endpoint_auth_method, redirect_uris, grant_types, scopes, default_scopes, status, origin, ' +
      `created_at, updated_at) VALUES (${q(c.id)}, ${q(tenantId)}, ${q(c.clientId)}, 'test client', ` +
      `${q(c.type)}, ${q(c.app)}, ${q(c.type === 'public' ? 'none' : 'client_secret_basic')}, ${j(c.redirect)}, ` +
      `${j(c.grants)}, ${j(c.scopes)}, ${j(c.defaults)}, ${q(c.status)}, 'operator', 0, 0);`,
  );
  return c;
}

/** An RFC 7636 S256 pair. */
export function pkce() {
  const verifier = crypto.randomBytes(32).toString('base64url');
  return { verifier, challenge: crypto.createHash('sha256').update(verifier).digest('base64url') };
}

/** GET /oauth2/authorize with params (an object: URL-encoded; a string: the
 * raw query, sent as is). */
export function authorize(t, params, opts = {}) {
  const qs = typeof params === 'string' ? params : new URLSearchParams(params).toString();
  return request(t, '/', { rawPath: `/oauth2/authorize?${qs}`, ...opts });
}

/** A request that a good client sends. */
export function goodParams(c, extra = {}) {
  return {
    response_type: 'code',
    client_id: c.clientId,
    redirect_uri: c.redirect[0],
    state: 'st-' + crypto.randomBytes(4).toString('hex'),
    code_challenge: pkce().challenge,
    code_challenge_method: 'S256',
    ...extra,
  };
}

/** The newest flow of client_id (through the API). */
export async function newestFlow(t, clientId, token = t.token) {
  const r = await api(t, `/v1/oauth/flows?client_id=${encodeURIComponent(clientId)}&limit=1`, { token });
  assert.equal(r.status, 200, r.text);
  return r.json.flows[0];
}

/** The redirect's parameters: {base, params} of a Location header. */
export function parseLocation(loc) {
  const u = new URL(loc);
  return { base: `${u.origin}${u.pathname}`, params: Object.fromEntries(u.searchParams), search: u.search };
}
