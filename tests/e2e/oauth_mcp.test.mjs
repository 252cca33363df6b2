// oauth_mcp.test.mjs: an MCP client (the TypeScript SDK's Client with
// StreamableHTTPClientTransport and an OAuthClientProvider) against a small
// MCP server that trusts tokend (lib/mcpserver.mjs), the way ChatGPT or
// Claude connect to a product's MCP server:
//
//   401 with WWW-Authenticate resource_metadata → RFC 9728 protected resource
//   metadata → tokend's RFC 8414 metadata → dynamic registration (RFC 7591,
//   oauth_dcr=open) → authorization code + PKCE S256 with resource (RFC 8707)
//   → tokend's login and consent pages (the provider's redirectToAuthorization
//   fills them, with a cookie jar) → the code exchanged → tool call → refresh.
//
// The refresh is driven honestly without waiting for the expiry: the MCP
// server refuses the first access token after one call (as a resource server
// does after learning of a revocation), the SDK's transport sees 401 and
// takes its own refresh path (auth() with the stored refresh token), and
// the call is retried with the new token.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { startMcpServer } from './lib/mcpserver.mjs';
import { authorizeInBrowser, CookieJar, createScope, createUser } from './lib/oauthflow.mjs';
import { noteSecret } from './lib/secrets.mjs';
import { api, backends, request, startTokend, stopAndScan, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const CB = 'http://127.0.0.1:9/mcp-callback';

/** An OAuthClientProvider that keeps everything in memory and signs in
 * through tokend's HTML pages when the SDK sends the user to authorize. */
class BrowserProvider {
  constructor(user) {
    this.user = user;
    this.jar = new CookieJar();
    this.client = undefined;
    this.saved = [];
    this.authUrls = [];
    this.callbacks = [];
    this.states = [];
    this.verifier = undefined;
  }
  get redirectUrl() {
    return CB;
  }
  get clientMetadata() {
    return {
      client_name: 'tokend e2e MCP client',
      redirect_uris: [CB],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      // unknown metadata is ignored by tokend's registration (RFC 7591 §2)
      software_id: 'tokend-e2e',
      logo_uri: 'https://app.example/logo.png',
    };
  }
  state() {
    const s = randomBytes(16).toString('base64url');
    this.states.push(s);
    return s;
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(ci) {
    if (ci.client_secret) noteSecret(ci.client_secret, { kind: 'oauth client secret' });
    if (ci.registration_access_token) noteSecret(ci.registration_access_token, { kind: 'registration access token' });
    this.client = ci;
  }
  tokens() {
    return this.saved.at(-1);
  }
  saveTokens(tokens) {
    for (const k of ['access_token', 'refresh_token']) if (tokens[k]) noteSecret(tokens[k], { kind: `mcp ${k}` });
    this.saved.push(tokens);
  }
  async redirectToAuthorization(url) {
    this.authUrls.push(url);
    const { callback } = await authorizeInBrowser(url, { redirectUri: CB, email: this.user.email, password: this.user.password, jar: this.jar });
    if (callback.searchParams.get('code')) noteSecret(callback.searchParams.get('code'), { kind: 'oauth code' });
    this.callbacks.push(callback);
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
}

for (const backend of backends()) {
  describe(`MCP client against a resource server that trusts tokend (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let mcp;
    let user;

    before(async () => {
      t = await startTokend({ backend, env: { TOKEND_OAUTH_DCR: 'open' } });
      await createScope(t, 'mcp:tools', 'Use the tools of the e2e MCP server');
      user = await createUser(t);
      mcp = await startMcpServer({ issuer: t.url, scope: 'mcp:tools' });
    });
    after(async () => {
      await mcp?.stop();
      await stopAndScan(t);
    });

    test('the resource server: 401 with resource_metadata, RFC 9728 metadata pointing at tokend', async () => {
      const r = await request(mcp.url, '/mcp', { method: 'POST', json: { jsonrpc: '2.0', id: 1, method: 'ping' } });
      assert.equal(r.status, 401);
      assert.match(r.headers['www-authenticate'], new RegExp(`^Bearer resource_metadata="${mcp.metadataUrl.replace(/[.?]/g, '\\$&')}"`));
      const m = await request(mcp.url, '/.well-known/oauth-protected-resource/mcp');
      assert.equal(m.status, 200);
      assert.deepEqual(m.json.authorization_servers, [t.url]);
      assert.equal(m.json.resource, mcp.url);
      // tokend's metadata has what an MCP client needs
      assert.ok(mcp.asMetadata.registration_endpoint, 'registration_endpoint (oauth_dcr=open)');
      assert.deepEqual(mcp.asMetadata.code_challenge_methods_supported, ['S256']);
    });

    test('dynamic registration: unknown metadata ignored, a non-loopback http redirect URI refused', async () => {
      const reg = mcp.asMetadata.registration_endpoint;
      const ok = await request(reg, new URL(reg).pathname, {
        method: 'POST',
        json: { client_name: 'unknown fields', redirect_uris: [CB], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], x_vendor_extension: { a: 1 }, tos_uri: 'https://app.example/tos' },
      });
      assert.equal(ok.status, 201, ok.text);
      assert.ok(ok.json.client_id);
      assert.equal(ok.json.x_vendor_extension, undefined, 'unknown metadata is not echoed');
      if (ok.json.registration_access_token) noteSecret(ok.json.registration_access_token, { kind: 'registration access token' });
      for (const uri of ['http://evil.example/cb', 'javascript:alert(1)']) {
        const bad = await request(reg, new URL(reg).pathname, { method: 'POST', json: { client_name: 'evil', redirect_uris: [uri], token_endpoint_auth_method: 'none' } });
        assert.equal(bad.status, 400, bad.text);
        assert.ok(['invalid_redirect_uri', 'invalid_client_metadata'].includes(bad.json.error), bad.text);
        assert.ok(bad.json.error_description, bad.text);
      }
      const scope = await request(reg, new URL(reg).pathname, { method: 'POST', json: { client_name: 's', redirect_uris: [CB], token_endpoint_auth_method: 'none', scope: 'admin:all' } });
      assert.equal(scope.status, 400, scope.text);
      assert.equal(scope.json.error, 'invalid_client_metadata');
    });

    test('SDK client: discovery, dynamic registration, PKCE with resource, login and consent, tool call, refresh', async () => {
      const provider = new BrowserProvider(user);
      const transport = new StreamableHTTPClientTransport(new URL(mcp.url), { authProvider: provider });
      const client = new Client({ name: 'tokend-e2e', version: '1.0.0' });
      // first connect: 401 → discovery → registration → the user authorizes → UnauthorizedError
      await assert.rejects(client.connect(transport), (e) => e instanceof UnauthorizedError);

      assert.ok(provider.client?.client_id, 'registered dynamically');
      assert.equal(provider.client.token_endpoint_auth_method, 'none');
      assert.equal(provider.client.client_secret, undefined, 'a public client gets no secret');
      const auth = provider.authUrls[0];
      assert.ok(auth, 'sent to the authorization endpoint');
      assert.equal(auth.origin + auth.pathname, mcp.asMetadata.authorization_endpoint);
      assert.equal(auth.searchParams.get('resource'), mcp.url, 'RFC 8707 resource');
      assert.equal(auth.searchParams.get('code_challenge_method'), 'S256');
      assert.equal(auth.searchParams.get('scope'), 'mcp:tools');
      const cb = provider.callbacks[0];
      assert.ok(cb.searchParams.get('code'), `a code at the redirect: ${cb}`);
      assert.equal(cb.searchParams.get('state'), provider.states[0]);
      assert.equal(cb.searchParams.get('iss'), t.url);

      // the app's redirect handler: exchange the code (the SDK sends the verifier and resource)
      await transport.finishAuth(cb.searchParams.get('code'));
      assert.equal(provider.saved.length, 1);
      const first = provider.saved[0];
      assert.ok(first.access_token && first.refresh_token, JSON.stringify(Object.keys(first)));
      await client.close();

      // connected with the token: the server verified it against tokend's JWKS with aud = itself
      const t2 = new StreamableHTTPClientTransport(new URL(mcp.url), { authProvider: provider });
      const c2 = new Client({ name: 'tokend-e2e', version: '1.0.0' });
      await c2.connect(t2);
      const tools = await c2.listTools();
      assert.deepEqual(tools.tools.map((x) => x.name), ['whoami']);
      let res = await c2.callTool({ name: 'whoami', arguments: {} });
      let who = JSON.parse(res.content[0].text);
      assert.equal(who.sub, user.id);
      assert.equal(who.client_id, provider.client.client_id);
      assert.equal(who.scope, 'mcp:tools');
      const firstJti = mcp.seen.at(-1).jti;

      // refresh: the server now refuses the first token; the SDK refreshes and retries
      mcp.rejectToken(firstJti);
      res = await c2.callTool({ name: 'whoami', arguments: {} });
      who = JSON.parse(res.content[0].text);
      assert.equal(who.sub, user.id);
      assert.equal(provider.saved.length, 2, 'the SDK refreshed once');
      const second = provider.saved[1];
      assert.notEqual(second.access_token, first.access_token);
      assert.ok(second.refresh_token && second.refresh_token !== first.refresh_token, 'a public client rotates its refresh token');
      assert.notEqual(mcp.seen.at(-1).jti, firstJti);
      assert.ok(mcp.refusals.some((x) => x.error === 'invalid_token'));
      await c2.close();

      // the old refresh token is dead (rotation), as tokend's token endpoint says
      const tr = await request(t, '/oauth2/token', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: first.refresh_token, client_id: provider.client.client_id }).toString(),
      });
      assert.equal(tr.status, 400, tr.text);
      assert.equal(tr.json.error, 'invalid_grant');

      // the operator sees the client and its completed flow
      const flows = await api(t, `/v1/oauth/flows?client_id=${encodeURIComponent(provider.client.client_id)}&status=completed`);
      assert.equal(flows.status, 200, flows.text);
      const list = flows.json.flows || flows.json.items || [];
      assert.equal(list.length, 1, flows.text);
    });

    test('a token for another audience is refused by the resource server', async () => {
      // the same kind of user flow without resource: the token's aud is not the MCP server
      const provider = new BrowserProvider(user);
      const transport = new StreamableHTTPClientTransport(new URL(mcp.url), { authProvider: provider });
      const client = new Client({ name: 'tokend-e2e', version: '1.0.0' });
      await assert.rejects(client.connect(transport), (e) => e instanceof UnauthorizedError);
      const u = new URL(provider.authUrls[0]);
      u.searchParams.delete('resource');
      const { callback } = await authorizeInBrowser(u, { redirectUri: CB, email: user.email, password: user.password, jar: provider.jar });
      const tr = await request(t, '/oauth2/token', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code: callback.searchParams.get('code'),
          redirect_uri: CB,
          client_id: provider.client.client_id,
          code_verifier: provider.verifier,
        }).toString(),
      });
      assert.equal(tr.status, 200, tr.text);
      noteSecret(tr.json.access_token, { kind: 'oauth access_token' });
      if (tr.json.refresh_token) noteSecret(tr.json.refresh_token, { kind: 'oauth refresh_token' });
      const r = await request(mcp.url, '/mcp', { method: 'POST', token: tr.json.access_token, json: { jsonrpc: '2.0', id: 1, method: 'ping' } });
      assert.equal(r.status, 401);
      assert.match(r.headers['www-authenticate'], /error="invalid_token"/);
      assert.match(r.headers['www-authenticate'], /aud/);
    });
  });
}
