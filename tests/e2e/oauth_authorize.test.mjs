// oauth_authorize.test.mjs: GET /oauth2/authorize against a real node on
// both backends, with OAuth clients planted in the store: an accepted
// request starts a flow and goes to the login page; field report 001's
// failures at this stage (trailing-slash redirect_uri, client_id mismatch,
// scope not allowed) with their stage and sentence; open-redirect attempts
// (never a redirect); PKCE downgrade; another tenant's client; hostile bytes
// in every parameter (too long, NUL, non-UTF-8, CRLF in state: no header
// split).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { addClient, authorize, goodParams, newestFlow, parseLocation, tenantOf } from './lib/oauthflows.mjs';
import { allEvents, api, backends, createTenant, startTokend, stopAndScan, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

function assertPage(r, re) {
  assert.equal(r.status, 400, r.text);
  assert.equal(r.headers.location, undefined, 'never a redirect');
  assert.match(r.headers['content-type'], /^text\/html/);
  assert.match(r.headers['content-security-policy'], /default-src 'none'/);
  assert.equal(r.headers['cache-control'], 'no-store');
  assert.doesNotMatch(r.text, /<script/i);
  if (re) assert.match(r.text, re);
}

/** A 303 back to the client with error: its parameters. */
function assertErrorRedirect(r, c, error, t) {
  assert.equal(r.status, 303, r.text);
  assert.equal(r.headers['cache-control'], 'no-store');
  const { base, params } = parseLocation(r.headers.location);
  assert.equal(base, c.redirect[0]);
  assert.equal(params.error, error);
  assert.equal(params.iss, t.url, 'iss (RFC 9207) is the public URL');
  return params;
}

for (const backend of backends()) {
  describe(`the authorization endpoint (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t, tenant;
    before(async () => {
      t = await startTokend({ backend });
      tenant = await tenantOf(t);
    });
    after(() => stopAndScan(t));

    it('an accepted request starts a flow and sends the browser to the login page', async () => {
      const c = await addClient(t, tenant, { scopes: ['dcr.create', 'read'], defaults: ['read'] });
      const p = goodParams(c, { nonce: 'n-1', resource: 'https://mcp.example/mcp' });
      const r = await authorize(t, p);
      assert.equal(r.status, 303, r.text);
      assert.equal(r.headers['cache-control'], 'no-store');
      const m = /^(.*)\/oauth2\/login\?flow=([0-9a-f-]{36})$/.exec(r.headers.location);
      assert.ok(m, r.headers.location);
      assert.equal(m[1], t.url);
      const f = await api(t, `/v1/oauth/flows/${m[2]}`);
      assert.equal(f.status, 200, f.text);
      assert.equal(f.json.stage, 'authorize_received');
      assert.equal(f.json.status, 'active');
      assert.equal(f.json.stuck, false);
      assert.equal(f.json.client_id, c.clientId);
      assert.equal(f.json.redirect_uri, c.redirect[0]);
      assert.deepEqual(f.json.scopes, ['read'], 'no scope requested: the default scopes');
      assert.equal(f.json.resource, 'https://mcp.example/mcp');
      assert.equal(f.json.code_challenge_method, 'S256');
      assert.equal(f.json.failed_stage, null);
      assert.equal(f.json.stages[0].stage, 'authorize_received');
      assert.ok(f.json.stages[0].at);
      assert.equal(f.json.stages[1].at, null);
      // its event: kind oauth, subject the flow
      const ev = await allEvents(t, `kind=oauth&subject=${m[2]}`);
      assert.equal(ev.length, 1);
      assert.equal(ev[0].action, 'authorize_received');
      assert.equal(ev[0].outcome, 'ok');
      assert.equal(ev[0].subject_type, 'oauth_flow');
      assert.equal(ev[0].detail.client_id, c.clientId);
      // scopes requested: deduplicated, kept
      const r2 = await authorize(t, goodParams(c, { scope: 'read dcr.create read' }));
      assert.equal(r2.status, 303);
      const f2 = await newestFlow(t, c.clientId);
      assert.deepEqual(f2.scopes, ['read', 'dcr.create']);
    });

    it('field report 001: a trailing slash on redirect_uri is an error page and a failed flow naming the difference', async () => {
      const c = await addClient(t, tenant, { redirect: ['https://chatgpt.com/backend-api/aip/connectors/oauth/callback'] });
      const r = await authorize(t, goodParams(c, { redirect_uri: c.redirect[0] + '/' }));
      assertPage(r, /trailing slash/);
      const f = await newestFlow(t, c.clientId);
      assert.equal(f.status, 'failed');
      assert.equal(f.failed_stage, 'authorize_received');
      assert.equal(f.error, 'invalid_request');
      assert.equal(
        f.reason,
        "redirect_uri 'https://chatgpt.com/backend-api/aip/connectors/oauth/callback/' does not match the registered " +
          "'https://chatgpt.com/backend-api/aip/connectors/oauth/callback' (trailing slash)",
      );
      assert.match(f.next_step, /^register 'https:\/\/chatgpt\.com\/.*callback\/' for the client \(redirect_uris\) or make the client send/);
      const failed = await api(t, '/v1/oauth/flows?status=failed&limit=1000');
      assert.ok(failed.json.flows.some((x) => x.id === f.id), 'listed as failed');
    });

    it('field report 001: a client_id that is not registered is an error page and a coalesced event', async () => {
      const r = await authorize(t, { response_type: 'code', client_id: 'chatgpt-client-456', redirect_uri: 'https://evil.example/cb', state: 'x' });
      assertPage(r, /client_id &#39;chatgpt-client-456&#39; is not a registered client/);
      const ev = await allEvents(t, 'kind=oauth&action=authorize_received&outcome=denied');
      const mine = ev.filter((e) => e.detail.client_id === 'chatgpt-client-456');
      assert.equal(mine.length, 1);
      assert.equal(mine[0].subject_type, 'oauth_client');
      assert.equal(mine[0].detail.reason, 'unknown_client');
      // a flood from one address: one event a minute
      for (let i = 0; i < 5; i++) await authorize(t, { client_id: 'chatgpt-client-456' });
      const ev2 = (await allEvents(t, 'kind=oauth&action=authorize_received&outcome=denied')).filter((e) => e.detail.client_id === 'chatgpt-client-456');
      assert.equal(ev2.length, 1, 'repeats are coalesced');
      // no client_id at all
      assertPage(await authorize(t, { response_type: 'code' }), /client_id is missing/);
    });

    it('field report 001: a scope not allowed goes back to the client as invalid_scope, never silently dropped', async () => {
      const c = await addClient(t, tenant, { scopes: ['dcr.create'] });
      const p = goodParams(c, { scope: 'dcr.create admin:all' });
      const r = await authorize(t, p);
      const params = assertErrorRedirect(r, c, 'invalid_scope', t);
      assert.equal(params.state, p.state);
      assert.equal(params.error_description, "scope 'admin:all' is not allowed for this client; allowed: dcr.create");
      const f = await newestFlow(t, c.clientId);
      assert.equal(f.failed_stage, 'authorize_received');
      assert.equal(f.error, 'invalid_scope');
      assert.equal(f.reason, "scope 'admin:all' is not allowed for this client; allowed: dcr.create");
    });

    it('open-redirect attempts are error pages, never redirects', async () => {
      const c = await addClient(t, tenant, { redirect: ['https://good.example/cb'] });
      const attempts = [
        'https://evil.example/cb',
        'javascript:alert(document.domain)',
        'data:text/html,<script>alert(1)</script>',
        'https://good.example@evil.example/cb',
        'https://good.example/cb@evil.example',
        'https://good.example.evil.example/cb',
        'https://good.example/cb/../../evil',
        '//evil.example/cb',
        'https:/evil.example/cb',
        'https://good.example/cb#@evil.example',
        'http://good.example/cb',
        'https://good.example:443/cb',
        'HTTPS://GOOD.EXAMPLE/cb',
      ];
      for (const uri of attempts) {
        const r = await authorize(t, goodParams(c, { redirect_uri: uri }));
        assertPage(r);
        assert.doesNotMatch(r.text, /<script>alert/, 'escaped');
      }
      // double-encoded: %252F stays %2F after one decoding, no match
      const raw = `response_type=code&client_id=${c.clientId}&redirect_uri=https%253A%252F%252Fgood.example%252Fcb&code_challenge=${'a'.repeat(43)}&code_challenge_method=S256`;
      assertPage(await authorize(t, raw));
      const f = await newestFlow(t, c.clientId);
      assert.equal(f.status, 'failed');
      assert.match(f.reason, /is not an absolute URI/);
      // userinfo: the sentence names it
      await authorize(t, goodParams(c, { redirect_uri: 'https://good.example@evil.example/cb' }));
      const f2 = await newestFlow(t, c.clientId);
      assert.match(f2.reason, /userinfo 'good\.example@' before the host; host 'evil\.example' instead of 'good\.example'/);
      assert.match(f2.next_step, /cannot be registered/);
    });

    it('a native client may use any loopback port; a web client may not', async () => {
      const n = await addClient(t, tenant, { app: 'native', redirect: ['http://127.0.0.1/callback'] });
      const r = await authorize(t, goodParams(n, { redirect_uri: 'http://127.0.0.1:53123/callback' }));
      assert.equal(r.status, 303);
      assert.match(r.headers.location, /\/oauth2\/login\?flow=/);
      assertPage(await authorize(t, goodParams(n, { redirect_uri: 'http://localhost:53123/callback' })));
      const w = await addClient(t, tenant, { app: 'web', redirect: ['http://127.0.0.1/callback'] });
      assertPage(await authorize(t, goodParams(w, { redirect_uri: 'http://127.0.0.1:53123/callback' })), /port/);
    });

    it('PKCE downgrade: plain, a missing method and a missing challenge are refused', async () => {
      const c = await addClient(t, tenant);
      let p = assertErrorRedirect(await authorize(t, goodParams(c, { code_challenge_method: 'plain' })), c, 'invalid_request', t);
      assert.equal(p.error_description, 'code_challenge_method plain is not supported; use S256');
      const f = await newestFlow(t, c.clientId);
      assert.equal(f.reason, 'code_challenge_method plain is not supported; use S256');
      const noMethod = goodParams(c);
      delete noMethod.code_challenge_method;
      p = assertErrorRedirect(await authorize(t, noMethod), c, 'invalid_request', t);
      assert.match(p.error_description, /plain is not supported/);
      const none = goodParams(c);
      delete none.code_challenge;
      delete none.code_challenge_method;
      p = assertErrorRedirect(await authorize(t, none), c, 'invalid_request', t);
      assert.equal(p.error_description, 'code_challenge is required for this client (PKCE with S256)');
      // a confidential client too (oauth_pkce_confidential defaults to true)
      const cc = await addClient(t, tenant, { type: 'confidential' });
      const none2 = goodParams(cc);
      delete none2.code_challenge;
      delete none2.code_challenge_method;
      assertErrorRedirect(await authorize(t, none2), cc, 'invalid_request', t);
      // a challenge of the wrong shape
      p = assertErrorRedirect(await authorize(t, goodParams(c, { code_challenge: 'abc' })), c, 'invalid_request', t);
      assert.match(p.error_description, /code_challenge is 3 characters long/);
    });

    it('response_type, grant and status of the client, resource', async () => {
      const c = await addClient(t, tenant);
      let p = assertErrorRedirect(await authorize(t, goodParams(c, { response_type: 'token' })), c, 'unsupported_response_type', t);
      assert.match(p.error_description, /response_type 'token' is not supported; use code/);
      const noRt = goodParams(c);
      delete noRt.response_type;
      assertErrorRedirect(await authorize(t, noRt), c, 'invalid_request', t);
      const cc = await addClient(t, tenant, { grants: ['client_credentials'] });
      p = assertErrorRedirect(await authorize(t, goodParams(cc)), cc, 'unauthorized_client', t);
      assert.match(p.error_description, /may not use the authorization_code grant/);
      const dis = await addClient(t, tenant, { status: 'disabled' });
      assertErrorRedirect(await authorize(t, goodParams(dis)), dis, 'unauthorized_client', t);
      assertErrorRedirect(await authorize(t, goodParams(c, { resource: 'https://mcp.example/#frag' })), c, 'invalid_target', t);
      assertErrorRedirect(await authorize(t, goodParams(c, { resource: 'not a uri' })), c, 'invalid_target', t);
      const two = new URLSearchParams(goodParams(c, { resource: 'https://a.example/' }));
      two.append('resource', 'https://b.example/');
      p = assertErrorRedirect(await authorize(t, two.toString()), c, 'invalid_target', t);
      assert.match(p.error_description, /resource is given more than once/);
    });

    it('redirect_uri may be left out only when the client registers exactly one', async () => {
      const one = await addClient(t, tenant);
      const p = goodParams(one);
      delete p.redirect_uri;
      const r = await authorize(t, p);
      assert.equal(r.status, 303);
      assert.match(r.headers.location, /\/oauth2\/login\?flow=/);
      const two = await addClient(t, tenant, { redirect: ['https://a.example/cb', 'https://b.example/cb'] });
      const p2 = goodParams(two);
      delete p2.redirect_uri;
      assertPage(await authorize(t, p2), /redirect_uri is missing/);
    });

    it('state is echoed URL-encoded; iss is present; the query of a redirect URI is kept', async () => {
      const c = await addClient(t, tenant, { redirect: ['https://app.example/cb?tenant=a&x=1'] });
      const state = 'a b&c=d/é?#';
      const r = await authorize(t, goodParams(c, { state, scope: 'nope' }));
      const { params, search } = parseLocation(r.headers.location);
      assert.equal(r.status, 303);
      assert.ok(search.startsWith('?tenant=a&x=1&error=invalid_scope&'), search);
      assert.equal(params.state, state);
      assert.equal(params.iss, t.url);
    });

    it("another tenant's client: its flows belong to that tenant only", async () => {
      const other = await createTenant(t);
      const c = await addClient(t, other.id);
      const r = await authorize(t, goodParams(c));
      assert.equal(r.status, 303);
      const id = /flow=([0-9a-f-]{36})/.exec(r.headers.location)[1];
      assert.equal((await api(t, `/v1/oauth/flows/${id}`)).status, 404, 'not the default tenant\'s');
      const mine = await api(t, `/v1/oauth/flows?client_id=${c.clientId}`);
      assert.equal(mine.json.flows.length, 0);
      const theirs = await api(t, `/v1/oauth/flows/${id}`, { token: other.token });
      assert.equal(theirs.status, 200);
      assert.equal(theirs.json.client_id, c.clientId);
    });

    it('hostile bytes in every parameter: too long, NUL, non-UTF-8, CRLF, repeated', async () => {
      const c = await addClient(t, tenant);
      const base = new URLSearchParams(goodParams(c)).toString();
      const send = (extra) => authorize(t, `${base}&${extra}`);
      const raw = (p) => authorize(t, new URLSearchParams(p).toString());
      // CRLF in state: refused, not echoed, no header split
      const g = goodParams(c);
      let r = await authorize(t, `${new URLSearchParams({ ...g, state: 'x' }).toString().replace('state=x', 'state=x%0d%0aX-Injected:%20yes')}`);
      let p = assertErrorRedirect(r, c, 'invalid_request', t);
      assert.equal(r.headers['x-injected'], undefined);
      assert.equal(p.state, undefined, 'an unacceptable state is not echoed');
      assert.match(p.error_description, /state holds a control character/);
      // NUL in state; too long state; non-UTF-8 in scope and nonce; repeated state
      // %00 is never decoded (the HTTP layer keeps it as the text "%00"):
      // no NUL reaches a value, and such a state is echoed as that text
      r = await authorize(t, new URLSearchParams({ ...g, state: 'x', scope: 'nope' }).toString().replace('state=x', 'state=a%00b'));
      p = assertErrorRedirect(r, c, 'invalid_scope', t);
      assert.equal(p.state, 'a%00b');
      p = assertErrorRedirect(await raw({ ...g, state: 's'.repeat(512) }), c, 'invalid_request', t);
      assert.match(p.error_description, /state is 512 bytes long; at most 511/);
      assert.equal(p.state, undefined);
      const dupState = new URLSearchParams(g);
      dupState.append('state', 'two');
      p = assertErrorRedirect(await authorize(t, dupState.toString()), c, 'invalid_request', t);
      assert.match(p.error_description, /state is given more than once/);
      p = assertErrorRedirect(await send('scope=%ff%fe'), c, 'invalid_request', t);
      assert.match(p.error_description, /scope is not valid UTF-8/);
      p = assertErrorRedirect(await send('nonce=%c3%28'), c, 'invalid_request', t);
      p = assertErrorRedirect(await send('scope=' + 'a'.repeat(3000)), c, 'invalid_request', t);
      assert.match(p.error_description, /scope is 3000 bytes long/);
      p = assertErrorRedirect(await send('code_challenge_method=S256%0d%0a'), c, 'invalid_request', t);
      p = assertErrorRedirect(await send('resource=https%3A%2F%2Fa%0db'), c, 'invalid_request', t);
      p = assertErrorRedirect(await send('response_type=code%00'), c, 'invalid_request', t);
      assert.match(p.error_description, /response_type is given more than once/);
      p = assertErrorRedirect(await raw({ ...g, response_type: 'code%00' }), c, 'unsupported_response_type', t);
      // the first two parameters are pages: client_id and redirect_uri
      assertPage(await raw({ ...g, client_id: c.clientId + '\r\nX: y' }));
      assertPage(await raw({ ...g, client_id: 'c'.repeat(600) }), /client_id is 600 bytes long/);
      assertPage(await authorize(t, base.replace(`client_id=${c.clientId}`, `client_id=${c.clientId}%00`)));
      assertPage(await authorize(t, base.replace(`client_id=${c.clientId}`, 'client_id=%ff')), /not valid UTF-8/);
      const dupClient = new URLSearchParams(g);
      dupClient.append('client_id', c.clientId);
      assertPage(await authorize(t, dupClient.toString()), /client_id is given more than once/);
      assertPage(await raw({ ...g, redirect_uri: g.redirect_uri + '\n' }), /redirect_uri holds a control character/);
      assertPage(await raw({ ...g, redirect_uri: 'https://app.example/' + 'a'.repeat(3000) }), /redirect_uri is \d+ bytes long/);
      const dupRedirect = new URLSearchParams(g);
      dupRedirect.append('redirect_uri', g.redirect_uri);
      assertPage(await authorize(t, dupRedirect.toString()), /redirect_uri is given more than once/);
      // the node is fine afterwards
      assert.equal((await authorize(t, goodParams(c))).status, 303);
      // every failed request of this client left a failed flow
      const failed = await api(t, `/v1/oauth/flows?client_id=${c.clientId}&status=failed&limit=1000`);
      assert.ok(failed.json.flows.length >= 14, `${failed.json.flows.length} failed flows`);
    });

    it('the route is public and answers while the node is unsealed only', async () => {
      const routes = await api(t, '/v1/sys/routes');
      const rt = routes.json.routes.find((x) => x.path === '/oauth2/authorize');
      assert.equal(rt.role, 'public');
      assert.equal(rt.sealed_ok, false);
    });
  });
}
