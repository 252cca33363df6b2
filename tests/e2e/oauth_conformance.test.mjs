// oauth_conformance.test.mjs: tokend's authorization server (issue 15) driven
// by real OAuth client libraries from npm, written against the RFCs and not
// against tokend: oauth4webapi (strict), openid-client, and jose for the
// access tokens. Discovery (RFC 8414 and openid-configuration), the
// authorization code with PKCE S256 through the HTML login and consent
// pages, state and iss checked by the library (RFC 9207), refresh with
// rotation (the old refresh token then fails), client credentials,
// introspection (RFC 7662), revocation (RFC 7009), RFC 9068 access tokens,
// and their verification against the JWKS across a signing-key rotation.
//
// tokend listens on plain HTTP on loopback, so the libraries are told to
// allow http (allowInsecureRequests); everything else is their default,
// strict behaviour.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import * as oidc from 'openid-client';

import { authorizeInBrowser, CookieJar, createClient, createScope, createUser } from './lib/oauthflow.mjs';
import { noteSecret } from './lib/secrets.mjs';
import { api, backends, freshDir, request, seenSecrets, startTokend, stopAndScan, SUITE_TIMEOUT_MS, waitFor } from './lib/tokend.mjs';

const insecure = { [oauth.allowInsecureRequests]: true };
const WEB_CB = 'https://app.example/cb';
const NATIVE_CB = 'http://127.0.0.1:9/cb';

/** Note the secrets of a token answer for the final scan. */
function noteTokens(tokens) {
  for (const k of ['access_token', 'refresh_token']) if (tokens?.[k]) noteSecret(tokens[k], { kind: `oauth ${k}` });
  return tokens;
}

/** The authorization URL of the RFC 6749 §4.1.1 request, PKCE S256. */
function authorizationUrl(as, { client_id, redirect_uri, scope, state, code_challenge, resource }) {
  const u = new URL(as.authorization_endpoint);
  u.searchParams.set('response_type', 'code');
  u.searchParams.set('client_id', client_id);
  u.searchParams.set('redirect_uri', redirect_uri);
  if (scope) u.searchParams.set('scope', scope);
  u.searchParams.set('state', state);
  u.searchParams.set('code_challenge', code_challenge);
  u.searchParams.set('code_challenge_method', 'S256');
  if (resource) u.searchParams.set('resource', resource);
  return u;
}

for (const backend of backends()) {
  describe(`OAuth conformance with npm clients (${backend})`, { timeout: SUITE_TIMEOUT_MS * 2 }, () => {
    let t;
    let issuer;
    let as; // oauth4webapi's view of the metadata
    let user;
    let web; // confidential: client_secret_basic, code + refresh + client_credentials
    let post; // confidential: client_secret_post
    let native; // public: none, native, loopback redirect

    before(async () => {
      t = await startTokend({ backend, env: { TOKEND_OAUTH_SIGNING_PUBLISH_AHEAD: '1' } });
      issuer = new URL(t.url);
      for (const s of ['notes:read', 'notes:write', 'admin:all']) await createScope(t, s, `Your notes (${s})`);
      user = await createUser(t);
      web = await createClient(t, {
        client_type: 'confidential',
        application_type: 'web',
        token_endpoint_auth_method: 'client_secret_basic',
        redirect_uris: [WEB_CB],
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        scopes: ['notes:read', 'notes:write'],
        default_scopes: ['notes:read'],
        rotate_refresh: true,
      });
      post = await createClient(t, {
        client_type: 'confidential',
        application_type: 'web',
        token_endpoint_auth_method: 'client_secret_post',
        redirect_uris: [WEB_CB],
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        scopes: ['notes:read'],
        default_scopes: ['notes:read'],
      });
      native = await createClient(t, {
        client_type: 'public',
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        redirect_uris: [NATIVE_CB],
        grant_types: ['authorization_code', 'refresh_token'],
        scopes: ['notes:read', 'notes:write'],
        default_scopes: ['notes:read'],
      });
      assert.ok(web.client_secret && post.client_secret, 'confidential clients get a secret once');
      assert.equal(native.client_secret, null, 'a public client has no secret');
    });
    after(() => stopAndScan(t));

    // ------------------------------------------------------------ discovery

    test('oauth4webapi: RFC 8414 discovery, strict issuer check, only what works advertised', async () => {
      const res = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure });
      as = await oauth.processDiscoveryResponse(issuer, res);
      assert.equal(as.issuer, t.url);
      assert.match(res.headers.get('cache-control') || '', /max-age/);
      for (const k of ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'introspection_endpoint', 'revocation_endpoint'])
        assert.ok(as[k] && as[k].startsWith(t.url), `${k}: ${as[k]}`);
      assert.deepEqual(as.code_challenge_methods_supported, ['S256']);
      assert.deepEqual(as.response_types_supported, ['code']);
      assert.equal(as.authorization_response_iss_parameter_supported, true);
      for (const g of ['authorization_code', 'refresh_token', 'client_credentials']) assert.ok(as.grant_types_supported.includes(g), g);
      assert.ok(!as.grant_types_supported.includes('implicit') && !as.grant_types_supported.includes('password'));
      for (const m of ['client_secret_basic', 'client_secret_post', 'none'])
        assert.ok(as.token_endpoint_auth_methods_supported.includes(m), m);
      // nothing OIDC-only that tokend does not do
      assert.equal(as.id_token_signing_alg_values_supported, undefined);
      assert.equal(as.userinfo_endpoint, undefined);

      // a different expected issuer is refused by the library (mix-up defence)
      const res2 = await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure });
      await assert.rejects(oauth.processDiscoveryResponse(new URL('http://127.0.0.1:1'), res2), /issuer/i);
    });

    test('openid-configuration is the same document, accepted by oauth4webapi (oidc) and openid-client', async () => {
      const r = await request(t, '/.well-known/openid-configuration');
      assert.equal(r.status, 200, r.text);
      const res = await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...insecure });
      const m = await oauth.processDiscoveryResponse(issuer, res);
      assert.equal(m.issuer, t.url);
      assert.equal(m.token_endpoint, as.token_endpoint);
      const cfg = await oidc.discovery(issuer, web.client_id, undefined, oidc.ClientSecretBasic(web.client_secret), {
        execute: [oidc.allowInsecureRequests],
      });
      assert.equal(cfg.serverMetadata().issuer, t.url);
    });

    // ------------------------------------------------------------ oauth4webapi

    test('oauth4webapi: code + PKCE S256 through login and consent, state and iss checked, refresh rotation, introspection, revocation', async () => {
      const client = { client_id: web.client_id };
      const auth = oauth.ClientSecretBasic(web.client_secret);
      const code_verifier = oauth.generateRandomCodeVerifier();
      const code_challenge = await oauth.calculatePKCECodeChallenge(code_verifier);
      const state = oauth.generateRandomState();
      const url = authorizationUrl(as, { client_id: web.client_id, redirect_uri: WEB_CB, scope: 'notes:read notes:write', state, code_challenge });
      const { callback, pages } = await authorizeInBrowser(url, { redirectUri: WEB_CB, email: user.email, password: user.password });
      assert.ok(pages.some((p) => p.url.includes('/oauth2/login')), `went through the login page: ${JSON.stringify(pages)}`);
      assert.equal(callback.searchParams.get('iss'), t.url, 'RFC 9207 iss in the response');
      noteSecret(callback.searchParams.get('code'), { kind: 'oauth code' });

      // the library refuses a wrong state and a wrong iss ...
      assert.throws(() => oauth.validateAuthResponse(as, client, callback, 'another-state'), /state/i);
      const badIss = new URL(callback);
      badIss.searchParams.set('iss', 'http://evil.example');
      assert.throws(() => oauth.validateAuthResponse(as, client, badIss, state), /iss/i);
      // ... and accepts tokend's
      const params = oauth.validateAuthResponse(as, client, callback, state);

      const res = await oauth.authorizationCodeGrantRequest(as, client, auth, params, WEB_CB, code_verifier, insecure);
      assert.equal(res.headers.get('cache-control'), 'no-store');
      const tok = noteTokens(await oauth.processAuthorizationCodeResponse(as, client, res));
      assert.equal(tok.token_type.toLowerCase(), 'bearer');
      assert.ok(tok.expires_in > 0 && tok.refresh_token, JSON.stringify(Object.keys(tok)));
      assert.deepEqual(tok.scope.split(' ').sort(), ['notes:read', 'notes:write']);

      // RFC 9068: a resource server's validation (oauth4webapi's own)
      const claims = await oauth.validateJwtAccessToken(as, new Request('https://rs.example/x', { headers: { authorization: `Bearer ${tok.access_token}` } }), web.client_id, insecure).catch(async (e) => {
        // aud is the client_id or the issuer when no resource was asked for (tokend's choice):
        // retry with the issuer before failing
        if (!/aud/i.test(e.message)) throw e;
        return oauth.validateJwtAccessToken(as, new Request('https://rs.example/x', { headers: { authorization: `Bearer ${tok.access_token}` } }), t.url, insecure);
      });
      assert.equal(claims.sub, user.id);
      assert.equal(claims.client_id, web.client_id);
      assert.equal(claims.iss, t.url);

      // refresh with rotation; the rotated one then fails (and takes its family with it)
      const r1 = await oauth.refreshTokenGrantRequest(as, client, auth, tok.refresh_token, insecure);
      const tok2 = noteTokens(await oauth.processRefreshTokenResponse(as, client, r1));
      assert.ok(tok2.refresh_token && tok2.refresh_token !== tok.refresh_token, 'a new refresh token');
      assert.notEqual(tok2.access_token, tok.access_token);
      const r2 = await oauth.refreshTokenGrantRequest(as, client, auth, tok.refresh_token, insecure);
      await assert.rejects(oauth.processRefreshTokenResponse(as, client, r2), (e) => e.error === 'invalid_grant');
      const r2b = await oauth.refreshTokenGrantRequest(as, client, auth, tok2.refresh_token, insecure);
      await assert.rejects(oauth.processRefreshTokenResponse(as, client, r2b), (e) => e.error === 'invalid_grant', 'the family is revoked');

      // introspection: a fresh code flow's access token is active; revoked, it is not
      const at = await codeFlowTokens();
      // the code is single use: the library sees invalid_grant, and what was issued from it is revoked
      const replay = await codeFlowTokens({ replay: true });
      for (const tk of [replay.access_token, replay.refresh_token]) {
        const x = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, auth, tk, insecure));
        assert.deepEqual(x, { active: false }, 'tokens issued from a replayed code are revoked');
      }
      let ir = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, auth, at.access_token, insecure));
      assert.equal(ir.active, true, JSON.stringify(ir));
      assert.equal(ir.client_id, web.client_id);
      assert.equal(ir.sub, user.id);
      assert.ok(ir.exp > Date.now() / 1000 && ir.iat <= Date.now() / 1000 + 5);
      assert.deepEqual(String(ir.scope).split(' ').sort(), ['notes:read']);
      await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, auth, at.access_token, insecure));
      ir = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, auth, at.access_token, insecure));
      assert.deepEqual(ir, { active: false });
      // a revoked refresh token: refresh refused, introspection inactive
      await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, auth, at.refresh_token, insecure));
      const r3 = await oauth.refreshTokenGrantRequest(as, client, auth, at.refresh_token, insecure);
      await assert.rejects(oauth.processRefreshTokenResponse(as, client, r3), (e) => e.error === 'invalid_grant');
      // RFC 7009 §2.2: an unknown token is a 200 too
      await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, auth, 'not-a-token', insecure));

      async function codeFlowTokens({ replay = false } = {}) {
        const v = oauth.generateRandomCodeVerifier();
        const st = oauth.generateRandomState();
        const u = authorizationUrl(as, { client_id: web.client_id, redirect_uri: WEB_CB, state: st, code_challenge: await oauth.calculatePKCECodeChallenge(v) });
        // the same browser: the session and the remembered consent skip both pages
        const { callback: cb } = await authorizeInBrowser(u, { redirectUri: WEB_CB, email: user.email, password: user.password, jar: browser });
        noteSecret(cb.searchParams.get('code'), { kind: 'oauth code' });
        const p = oauth.validateAuthResponse(as, client, cb, st);
        const got = noteTokens(await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(as, client, auth, p, WEB_CB, v, insecure)));
        if (replay) {
          const again = await oauth.authorizationCodeGrantRequest(as, client, auth, p, WEB_CB, v, insecure);
          await assert.rejects(oauth.processAuthorizationCodeResponse(as, client, again), (e) => e.error === 'invalid_grant' && /already used/.test(e.error_description));
        }
        return got;
      }
    });

    const browser = new CookieJar();

    test('a signed-in user who consented before goes straight back to the client (no page)', async () => {
      const client = { client_id: web.client_id };
      const v = oauth.generateRandomCodeVerifier();
      const st = oauth.generateRandomState();
      const mk = async () => authorizationUrl(as, { client_id: web.client_id, redirect_uri: WEB_CB, scope: 'notes:read', state: st, code_challenge: await oauth.calculatePKCECodeChallenge(v) });
      const first = await authorizeInBrowser(await mk(), { redirectUri: WEB_CB, email: user.email, password: user.password, jar: browser });
      const sessionCookie = [...browser.cookies.values()].find((c) => /^tku_/.test(c.value));
      assert.ok(sessionCookie, `a tku_ session cookie: ${JSON.stringify([...browser.cookies])}`);
      assert.ok(sessionCookie.httpOnly, 'HttpOnly');
      noteSecret(sessionCookie.value, { kind: 'user session' });
      oauth.validateAuthResponse(as, client, first.callback, st);
      const second = await authorizeInBrowser(await mk(), { redirectUri: WEB_CB, email: 'x', password: 'y', jar: browser });
      assert.equal(second.pages.length, 1, `one redirect straight to the client: ${JSON.stringify(second.pages)}`);
      oauth.validateAuthResponse(as, client, second.callback, st);
    });

    test('oauth4webapi: the user denies consent → access_denied with state and iss at the client', async () => {
      const client = { client_id: native.client_id };
      const v = oauth.generateRandomCodeVerifier();
      const st = oauth.generateRandomState();
      const u = authorizationUrl(as, { client_id: native.client_id, redirect_uri: NATIVE_CB, scope: 'notes:write', state: st, code_challenge: await oauth.calculatePKCECodeChallenge(v) });
      const { callback } = await authorizeInBrowser(u, { redirectUri: NATIVE_CB, email: user.email, password: user.password, consent: 'deny' });
      assert.equal(callback.searchParams.get('error'), 'access_denied');
      assert.throws(() => oauth.validateAuthResponse(as, client, callback, st), (e) => e instanceof oauth.AuthorizationResponseError && e.error === 'access_denied');
    });

    test('oauth4webapi: client credentials (client_secret_basic and client_secret_post), scope narrowing and invalid_scope', async () => {
      const client = { client_id: web.client_id };
      const auth = oauth.ClientSecretBasic(web.client_secret);
      let res = await oauth.clientCredentialsGrantRequest(as, client, auth, new URLSearchParams(), insecure);
      const d = noteTokens(await oauth.processClientCredentialsResponse(as, client, res));
      assert.equal(d.scope, 'notes:read', 'no scope asked for: the default scopes');
      assert.equal(d.refresh_token, undefined, 'no refresh token for client_credentials');
      const { payload, protectedHeader } = await jwtVerify(d.access_token, createRemoteJWKSet(new URL(as.jwks_uri)), { issuer: t.url, typ: 'at+jwt' });
      assert.equal(protectedHeader.alg, 'ES256');
      assert.equal(payload.client_id, web.client_id);
      assert.equal(payload.sub, web.client_id);

      res = await oauth.clientCredentialsGrantRequest(as, client, auth, new URLSearchParams({ scope: 'notes:write' }), insecure);
      assert.equal(noteTokens(await oauth.processClientCredentialsResponse(as, client, res)).scope, 'notes:write');
      res = await oauth.clientCredentialsGrantRequest(as, client, auth, new URLSearchParams({ scope: 'admin:all' }), insecure);
      await assert.rejects(oauth.processClientCredentialsResponse(as, client, res), (e) => e.error === 'invalid_scope' && /admin:all/.test(e.error_description));

      const pc = { client_id: post.client_id };
      res = await oauth.clientCredentialsGrantRequest(as, pc, oauth.ClientSecretPost(post.client_secret), new URLSearchParams(), insecure);
      assert.equal(noteTokens(await oauth.processClientCredentialsResponse(as, pc, res)).scope, 'notes:read');
      // the registered method only: Basic for a client_secret_post client is refused
      // (401 with a Basic challenge: oauth4webapi reports the challenge)
      const refused = (e) => (e instanceof oauth.WWWAuthenticateChallengeError && e.status === 401 && e.cause.some((c) => c.scheme === 'basic')) || e.error === 'invalid_client';
      res = await oauth.clientCredentialsGrantRequest(as, pc, oauth.ClientSecretBasic(post.client_secret), new URLSearchParams(), insecure);
      assert.equal((await res.clone().json()).error, 'invalid_client');
      await assert.rejects(oauth.processClientCredentialsResponse(as, pc, res), refused);
      // a wrong secret: invalid_client, 401 with WWW-Authenticate for Basic
      res = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic('tks_wrong'), new URLSearchParams(), insecure);
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') || '', /^Basic/i);
      assert.equal((await res.clone().json()).error, 'invalid_client');
      await assert.rejects(oauth.processClientCredentialsResponse(as, client, res), refused);
      // client_secret_post with a wrong secret: 401 invalid_client in the body
      res = await oauth.clientCredentialsGrantRequest(as, pc, oauth.ClientSecretPost('tks_wrong'), new URLSearchParams(), insecure);
      assert.equal(res.status, 401);
      await assert.rejects(oauth.processClientCredentialsResponse(as, pc, res), refused);
    });

    test('oauth4webapi: eight concurrent redemptions of one code: exactly one wins', async () => {
      const client = { client_id: web.client_id };
      const auth = oauth.ClientSecretBasic(web.client_secret);
      const v = oauth.generateRandomCodeVerifier();
      const st = oauth.generateRandomState();
      const u = authorizationUrl(as, { client_id: web.client_id, redirect_uri: WEB_CB, state: st, code_challenge: await oauth.calculatePKCECodeChallenge(v) });
      const { callback } = await authorizeInBrowser(u, { redirectUri: WEB_CB, email: user.email, password: user.password, jar: browser });
      noteSecret(callback.searchParams.get('code'), { kind: 'oauth code' });
      const p = oauth.validateAuthResponse(as, client, callback, st);
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, async () => noteTokens(await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(as, client, auth, p, WEB_CB, v, insecure)))),
      );
      const won = results.filter((x) => x.status === 'fulfilled');
      const lost = results.filter((x) => x.status === 'rejected');
      assert.equal(won.length, 1, `exactly one exchange wins: ${JSON.stringify(results.map((x) => x.status === 'rejected' ? x.reason.error || x.reason.message : 'ok'))}`);
      for (const l of lost) assert.equal(l.reason.error, 'invalid_grant', l.reason.stack);
    });

    // ------------------------------------------------------------ openid-client

    test('openid-client: public native client, code + PKCE with the loopback redirect, refresh rotation, old refresh refused', async () => {
      const cfg = await oidc.discovery(issuer, native.client_id, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests], algorithm: 'oauth2' });
      const code_verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const url = oidc.buildAuthorizationUrl(cfg, {
        redirect_uri: NATIVE_CB,
        scope: 'notes:read notes:write',
        code_challenge: await oidc.calculatePKCECodeChallenge(code_verifier),
        code_challenge_method: 'S256',
        state,
      });
      const { callback } = await authorizeInBrowser(url, { redirectUri: NATIVE_CB, email: user.email, password: user.password });
      noteSecret(callback.searchParams.get('code'), { kind: 'oauth code' });
      // a wrong expected state is refused by the library
      await assert.rejects(oidc.authorizationCodeGrant(cfg, callback, { pkceCodeVerifier: code_verifier, expectedState: 'nope' }), (e) => /state/.test(e.cause?.message));
      const tokens = noteTokens(await oidc.authorizationCodeGrant(cfg, callback, { pkceCodeVerifier: code_verifier, expectedState: state }));
      assert.ok(tokens.access_token && tokens.refresh_token);
      assert.equal(tokens.scope.split(' ').sort().join(' '), 'notes:read notes:write');

      const r1 = noteTokens(await oidc.refreshTokenGrant(cfg, tokens.refresh_token));
      assert.notEqual(r1.refresh_token, tokens.refresh_token, 'a public client always rotates');
      // narrowing the scope on refresh (RFC 6749 §6)
      const r2 = noteTokens(await oidc.refreshTokenGrant(cfg, r1.refresh_token, { scope: 'notes:read' }));
      assert.equal(r2.scope, 'notes:read');
      await assert.rejects(oidc.refreshTokenGrant(cfg, tokens.refresh_token), (e) => e.error === 'invalid_grant');
      // reuse of a rotated token revokes the family: the newest one is dead too
      await assert.rejects(oidc.refreshTokenGrant(cfg, r2.refresh_token), (e) => e.error === 'invalid_grant');
    });

    test('openid-client: PKCE is required; a wrong code_verifier is invalid_grant', async () => {
      const cfg = await oidc.discovery(issuer, native.client_id, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests], algorithm: 'oauth2' });
      const v = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const url = oidc.buildAuthorizationUrl(cfg, { redirect_uri: NATIVE_CB, code_challenge: await oidc.calculatePKCECodeChallenge(v), code_challenge_method: 'S256', state });
      const { callback } = await authorizeInBrowser(url, { redirectUri: NATIVE_CB, email: user.email, password: user.password });
      await assert.rejects(
        oidc.authorizationCodeGrant(cfg, callback, { pkceCodeVerifier: oidc.randomPKCECodeVerifier(), expectedState: state }),
        (e) => e.error === 'invalid_grant' && /code_verifier/.test(e.error_description),
      );
      // a public client without a code_challenge: refused at the authorization endpoint, at the client
      const noPkce = oidc.buildAuthorizationUrl(cfg, { redirect_uri: NATIVE_CB, state });
      const { callback: cb2 } = await authorizeInBrowser(noPkce, { redirectUri: NATIVE_CB, email: user.email, password: user.password });
      assert.equal(cb2.searchParams.get('error'), 'invalid_request');
      assert.equal(cb2.searchParams.get('state'), state);
      assert.equal(cb2.searchParams.get('iss'), t.url);
    });

    test('openid-client: confidential client: client credentials, introspection, revocation', async () => {
      const cfg = await oidc.discovery(issuer, web.client_id, undefined, oidc.ClientSecretBasic(web.client_secret), { execute: [oidc.allowInsecureRequests], algorithm: 'oauth2' });
      const cc = noteTokens(await oidc.clientCredentialsGrant(cfg, { scope: 'notes:read notes:write' }));
      assert.equal(cc.scope.split(' ').sort().join(' '), 'notes:read notes:write');
      let ir = await oidc.tokenIntrospection(cfg, cc.access_token);
      assert.equal(ir.active, true);
      assert.equal(ir.client_id, web.client_id);
      assert.equal(ir.iss, t.url);
      await oidc.tokenRevocation(cfg, cc.access_token);
      ir = await oidc.tokenIntrospection(cfg, cc.access_token);
      assert.equal(ir.active, false);
      // a token tokend never issued: inactive
      ir = await oidc.tokenIntrospection(cfg, 'eyJhbGciOiJub25lIn0.e30.');
      assert.equal(ir.active, false);
    });

    test('openid-client: dynamic registration with an initial access token (oauth_dcr=token), then the code flow; RFC 7592 read and delete', async () => {
      const opts = { execute: [oidc.allowInsecureRequests], algorithm: 'oauth2' };
      // without the operator token as initial access token: refused
      await assert.rejects(
        oidc.dynamicClientRegistration(issuer, { redirect_uris: [WEB_CB], token_endpoint_auth_method: 'client_secret_basic' }, undefined, opts),
        (e) => e.status === 401 || e.error === 'invalid_token' || e.cause?.status === 401,
      );
      const cfg = await oidc.dynamicClientRegistration(
        issuer,
        { client_name: 'registered by openid-client', redirect_uris: [WEB_CB], token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code', 'refresh_token'], scope: 'notes:read' },
        oidc.ClientSecretBasic(), // the registered method, with the secret the registration answers
        { ...opts, initialAccessToken: t.token },
      );
      const md = cfg.clientMetadata();
      assert.ok(md.client_id && md.client_secret, 'a confidential client with its secret, once');
      noteSecret(md.client_secret, { kind: 'oauth client secret' });
      if (md.registration_access_token) noteSecret(md.registration_access_token, { kind: 'registration access token' });
      assert.equal(md.client_secret_expires_at, 0);
      assert.ok(md.registration_client_uri?.startsWith(t.url), md.registration_client_uri);
      // the registered client goes through the whole code flow with Basic (the default)
      const v = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const url = oidc.buildAuthorizationUrl(cfg, { redirect_uri: WEB_CB, scope: 'notes:read', code_challenge: await oidc.calculatePKCECodeChallenge(v), code_challenge_method: 'S256', state });
      const { callback } = await authorizeInBrowser(url, { redirectUri: WEB_CB, email: user.email, password: user.password });
      noteSecret(callback.searchParams.get('code'), { kind: 'oauth code' });
      const tokens = noteTokens(await oidc.authorizationCodeGrant(cfg, callback, { pkceCodeVerifier: v, expectedState: state }));
      assert.equal(tokens.scope, 'notes:read');
      noteTokens(await oidc.refreshTokenGrant(cfg, tokens.refresh_token));
      // RFC 7592: read with the registration access token, then delete; the client is gone
      const rd = await request(md.registration_client_uri, new URL(md.registration_client_uri).pathname, { token: md.registration_access_token });
      assert.equal(rd.status, 200, rd.text);
      assert.equal(rd.json.client_id, md.client_id);
      assert.equal(rd.json.client_secret, undefined, 'the secret is never shown again');
      const del = await request(md.registration_client_uri, new URL(md.registration_client_uri).pathname, { method: 'DELETE', token: md.registration_access_token });
      assert.equal(del.status, 204, del.text);
      // a deleted client no longer authenticates (401 with a Basic challenge)
      const gone = (e) => e.error === 'invalid_client' || (e.status === 401 && e.code === 'OAUTH_WWW_AUTHENTICATE_CHALLENGE');
      await assert.rejects(oidc.clientCredentialsGrant(cfg), gone);
      await assert.rejects(oidc.refreshTokenGrant(cfg, tokens.refresh_token), gone);
    });

    // ------------------------------------------------------------ jose and key rotation

    test('jose: access tokens verify against the JWKS across a signing-key rotation', async () => {
      const client = { client_id: web.client_id };
      const auth = oauth.ClientSecretBasic(web.client_secret);
      const issue = async () => noteTokens(await oauth.processClientCredentialsResponse(as, client, await oauth.clientCredentialsGrantRequest(as, client, auth, new URLSearchParams(), insecure))).access_token;
      const jwksOf = async () => {
        const r = await request(t, new URL(as.jwks_uri).pathname);
        assert.equal(r.status, 200, r.text);
        return r.json;
      };
      const old = await issue();
      const oldKid = decodeProtectedHeader(old).kid;
      assert.ok(oldKid, 'kid on every token');
      const before = await jwksOf();
      for (const k of before.keys) {
        assert.equal(k.d, undefined, 'no private part in the JWKS');
        assert.equal(k.use, 'sig');
      }
      const remote = createRemoteJWKSet(new URL(as.jwks_uri), { cooldownDuration: 0 });
      await jwtVerify(old, remote, { issuer: t.url, typ: 'at+jwt' });

      const rot = await api(t, '/v1/sys/signing-keys/rotate', { method: 'POST', json: {} });
      assert.ok(rot.status === 200 || rot.status === 201, `rotate: ${rot.status} ${rot.text}`);
      // the new key is published, then it signs (publish-ahead 1 s here)
      const published = await waitFor(async () => {
        const j = await jwksOf();
        return j.keys.length >= 2 && j.keys.some((k) => k.kid !== oldKid) && j;
      }, { timeoutMs: 10000, message: 'the new key in the JWKS' });
      const newKid = published.keys.find((k) => k.kid !== oldKid).kid;
      const fresh = await waitFor(async () => {
        const tk = await issue();
        return decodeProtectedHeader(tk).kid === newKid && tk;
      }, { timeoutMs: 15000, intervalMs: 200, message: 'a token signed with the new key' });

      // both verify: the remote set (refetching on an unknown kid) and a snapshot of the JWKS
      await jwtVerify(fresh, remote, { issuer: t.url, typ: 'at+jwt' });
      await jwtVerify(old, remote, { issuer: t.url, typ: 'at+jwt' });
      const local = createLocalJWKSet(await jwksOf());
      await jwtVerify(old, local, { issuer: t.url, typ: 'at+jwt' });
      await jwtVerify(fresh, local, { issuer: t.url, typ: 'at+jwt' });
      // and tokend itself still accepts the old one
      const ir = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, auth, old, insecure));
      assert.equal(ir.active, true);
      // a tampered token does not verify
      const [h, p, s] = fresh.split('.');
      const tampered = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url')), scope: 'admin:all' })).toString('base64url')}.${s}`;
      await assert.rejects(jwtVerify(tampered, local, { issuer: t.url }), /signature/i);
    });
  });
}

// ---------------------------------------------------------------- over HTTPS, nothing relaxed

function openssl(args, cwd) {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 30000 }, (err, stdout, stderr) => (err ? reject(new Error(`openssl ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

/** A private CA and a leaf for 127.0.0.1 in dir: ca.pem, leaf.pem, leaf.key. */
async function makeCerts(dir) {
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=tokend oauth e2e CA'], dir);
  await writeFile(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=127.0.0.1'], dir);
  await openssl(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-out', 'leaf.pem', '-days', '2', '-extfile', 'ext.cnf'], dir);
  const key = await readFile(path.join(dir, 'leaf.key'), 'utf8');
  noteSecret(key.split('\n').filter((l) => l && !l.startsWith('-----')).join(''), { kind: 'tls-key' });
  return readFile(path.join(dir, 'ca.pem'), 'utf8');
}

/** A fetch() over node:https that trusts ca (Node's own fetch cannot be
 * given a CA after start): for the libraries' customFetch option. */
function caFetch(ca) {
  return (url, { method = 'GET', headers, body, signal } = {}) =>
    new Promise((resolve, reject) => {
      const u = new URL(url);
      const h = Object.fromEntries(new Headers(headers).entries());
      let data;
      if (body instanceof URLSearchParams) {
        data = body.toString();
        h['content-type'] ??= 'application/x-www-form-urlencoded;charset=UTF-8';
      } else if (body != null) data = typeof body === 'string' ? body : Buffer.from(body);
      if (data !== undefined) h['content-length'] = Buffer.byteLength(data);
      const req = https.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: h, ca, agent: false, signal }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const out = new Headers();
          for (const [k, v] of Object.entries(res.headers)) for (const x of [].concat(v)) out.append(k, x);
          const nobody = [204, 304].includes(res.statusCode);
          resolve(new Response(nobody ? null : Buffer.concat(chunks), { status: res.statusCode, headers: out }));
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      if (data !== undefined) req.write(data);
      req.end();
    });
}

for (const backend of backends()) {
  describe(`OAuth conformance over HTTPS, libraries at their strictest (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let ca;
    let fetchCa;
    let issuer;

    before(async () => {
      const dir = await freshDir('oauth-tls');
      ca = await makeCerts(dir);
      fetchCa = caFetch(ca);
      t = await startTokend({ backend, args: ['--tls-cert-file', path.join(dir, 'leaf.pem'), '--tls-key-file', path.join(dir, 'leaf.key')] });
      issuer = new URL(`https://127.0.0.1:${t.port}`);
    });
    after(() => stopAndScan(t, seenSecrets(), { events: false })); // the events are in the store dump

    test('oauth4webapi without allowInsecureRequests: discovery, client credentials, RFC 9068 validation, introspection, revocation', async () => {
      const f = { [oauth.customFetch]: fetchCa };
      const json = async (pathname, body) => {
        const r = await fetchCa(new URL(pathname, issuer), { method: 'POST', headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
        const j = await r.json();
        assert.ok(r.status === 201 || r.status === 409, `${pathname}: ${r.status} ${JSON.stringify(j)}`);
        return j;
      };
      await json('/v1/oauth/scopes', { name: 'tls:read', description: 'over TLS' });
      const c = await json('/v1/oauth/clients', {
        name: 'tls',
        client_type: 'confidential',
        application_type: 'web',
        token_endpoint_auth_method: 'client_secret_basic',
        redirect_uris: [WEB_CB],
        grant_types: ['client_credentials'],
        scopes: ['tls:read'],
        default_scopes: ['tls:read'],
      });
      const clientId = c.client_id ?? c.client?.client_id;
      const secret = c.client_secret ?? c.client?.client_secret;
      noteSecret(secret, { kind: 'oauth client secret' });

      const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...f }));
      assert.equal(as.issuer, issuer.origin);
      assert.ok(as.token_endpoint.startsWith('https://'), as.token_endpoint);
      const client = { client_id: clientId };
      const auth = oauth.ClientSecretBasic(secret);
      const tok = noteTokens(await oauth.processClientCredentialsResponse(as, client, await oauth.clientCredentialsGrantRequest(as, client, auth, new URLSearchParams(), f)));
      const claims = await oauth.validateJwtAccessToken(as, new Request('https://rs.example/', { headers: { authorization: `Bearer ${tok.access_token}` } }), tok.access_token && JSON.parse(Buffer.from(tok.access_token.split('.')[1], 'base64url')).aud, f);
      assert.equal(claims.iss, issuer.origin);
      assert.equal(claims.client_id, clientId);
      let ir = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, auth, tok.access_token, f));
      assert.equal(ir.active, true);
      await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, auth, tok.access_token, f));
      ir = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, auth, tok.access_token, f));
      assert.equal(ir.active, false);
      // the same library refuses the plain-HTTP issuer unless told otherwise
      await assert.rejects(oauth.discoveryRequest(new URL(`http://127.0.0.1:${t.port}`), { algorithm: 'oauth2' }), /https/i);
    });
  });
}
