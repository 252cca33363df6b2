// connect.test.mjs: the connect flow end to end against a real OAuth server
// (npm oidc-provider, lib/oidcupstream.mjs): POST /v1/connect/{app_id}/start,
// a browser without a UI through the provider's redirects (auto login and
// consent), GET /connect/callback, the code exchanged with PKCE, the
// connection stored, the browser sent back to return_url with
// connection_id. Then what must fail, each with its stage in an event:
// a replayed state, an expired one (the row's expiry moved, no sleeping),
// an unknown one, the provider's error=access_denied, a code_verifier the
// provider does not accept (a proxy changes it on the way), another
// tenant's app (404), bad bodies. Ends with the secret scan (the provider's
// tokens, the client secrets, states and codes noted).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { browse, startOidcUpstream, startTokenProxy } from './lib/oidcupstream.mjs';
import { noteSecret } from './lib/secrets.mjs';
import {
  allEvents,
  api,
  backends,
  createTenant,
  request,
  runCli,
  startTokend,
  stopAndScan,
  storeSql,
  uniqueId,
  waitFor,
  SUITE_TIMEOUT_MS,
} from './lib/tokend.mjs';

const RETURN = 'https://app.example.test/connected?from=tokend';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

for (const backend of backends()) {
  describe(`connect (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let up;
    let last = null; // the provider's latest token answer
    const proxies = [];

    before(async () => {
      t = await startTokend({ backend, args: ['--refresh-concurrency', '0'] }); // the engine has its own suite
      up = await startOidcUpstream({
        redirectUri: `${t.url}/connect/callback`,
        // an hour: the refresh engine leaves these connections alone while the test drives
        accessTtl: 3600,
        onTokens: (j) => {
          last = j;
          if (j.access_token) noteSecret(j.access_token, { kind: 'upstream-access-token' });
          if (j.refresh_token) noteSecret(j.refresh_token, { kind: 'upstream-refresh-token' });
          if (j.id_token) noteSecret(j.id_token, { kind: 'upstream-id-token' });
        },
      });
      noteSecret(up.clients.basic.secret, { kind: 'client-secret' });
      noteSecret(up.clients.post.secret, { kind: 'client-secret' });
    });
    after(async () => {
      for (const p of proxies) await p.stop();
      if (up) await up.stop();
      await stopAndScan(t);
    });

    async function makeApp(auth = 'client_secret_basic', over = {}, token = t.token) {
      const c = auth === 'client_secret_basic' ? up.clients.basic : up.clients.post;
      const r = await request(t, '/v1/provider-apps', {
        method: 'POST',
        token,
        json: {
          provider: 'generic-oauth2',
          name: uniqueId('oidc'),
          client_id: c.id,
          client_secret: c.secret,
          scopes: ['api', 'read'],
          authorize_url: up.authorizeUrl,
          token_url: up.tokenUrl,
          client_auth: auth,
          ...over,
        },
      });
      assert.equal(r.status, 201, r.text);
      return r.json.id;
    }

    async function start(appId, body, token = t.token) {
      const r = await request(t, `/v1/connect/${appId}/start`, { method: 'POST', token, json: body });
      if (r.status === 200) {
        const u = new URL(r.json.authorize_url);
        noteSecret(u.searchParams.get('state'), { kind: 'connect-state' });
      }
      return r;
    }

    /** Follow the authorization URL to the callback and on to return_url
     * (not fetched). Notes the code for the scan. */
    async function run(authorizeUrl) {
      const res = await browse(authorizeUrl, { stop: (u) => u.href.startsWith('https://app.example.test/') });
      for (const h of res.hops) {
        const code = new URL(h).searchParams.get('code');
        if (code) noteSecret(code, { kind: 'authorization-code' });
      }
      res.callback = res.hops.find((h) => h.startsWith(`${t.url}/connect/callback`)) || null;
      return res;
    }

    async function connectEvents() {
      return allEvents(t, 'kind=connect');
    }

    it('client_secret_basic + PKCE: start, the provider, the callback, back to return_url with connection_id', async () => {
      const appId = await makeApp('client_secret_basic');
      const label = uniqueId('crm');
      const s = await start(appId, { label, return_url: RETURN });
      assert.equal(s.status, 200, s.text);
      const u = new URL(s.json.authorize_url);
      assert.equal(u.origin + u.pathname, up.authorizeUrl);
      assert.equal(u.searchParams.get('response_type'), 'code');
      assert.equal(u.searchParams.get('client_id'), up.clients.basic.id);
      assert.equal(u.searchParams.get('redirect_uri'), `${t.url}/connect/callback`);
      assert.equal(u.searchParams.get('scope'), 'api read');
      assert.equal(u.searchParams.get('code_challenge_method'), 'S256');
      assert.match(u.searchParams.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/);
      assert.match(u.searchParams.get('state'), /^[A-Za-z0-9_-]{43}$/);
      const left = Date.parse(s.json.state_expires_at) - Date.now();
      assert.ok(left > 9 * 60000 && left <= 10 * 60000 + 5000, `state_expires_at ${s.json.state_expires_at}`);
      assert.equal(s.headers['cache-control'], 'no-store');

      const tokensBefore = up.issued.access;
      const res = await run(s.json.authorize_url);
      assert.ok(res.stoppedAt, `no redirect to return_url: ${res.status} ${res.text.slice(0, 300)} via ${res.hops.join(' -> ')}`);
      assert.ok(res.callback, 'the provider sent the browser to the callback');
      assert.equal(res.status, 303);
      assert.equal(res.stoppedAt.searchParams.get('from'), 'tokend', 'return_url keeps its own query');
      const connId = res.stoppedAt.searchParams.get('connection_id');
      assert.match(connId, UUID);
      assert.equal(res.stoppedAt.searchParams.get('error'), null);
      assert.equal(up.issued.access, tokensBefore + 1, 'one code exchange');
      assert.equal(up.issued.refresh > 0, true);

      // the connection is the tenant's, for this app and label
      const row = await storeSql(t, `SELECT app_id || '|' || label || '|' || status FROM connections WHERE id = '${connId}'`);
      assert.equal(row.trim(), `${appId}|${label}|ok`);
      // ... shown by the connections API, its token the one the provider issued
      const shown = await api(t, `/v1/connections/${connId}`);
      assert.equal(shown.status, 200, shown.text);
      assert.equal(shown.json.app_id, appId);
      assert.equal(shown.json.label, label);
      assert.equal(shown.json.has_refresh_token, true);
      assert.doesNotMatch(shown.text, new RegExp(last.access_token));
      const tok = await api(t, `/v1/connections/${connId}/token`);
      assert.equal(tok.status, 200, tok.text);
      assert.equal(tok.json.access_token, last.access_token);
      // the state row: spent, only a hash of the state, the verifier sealed
      const st = await storeSql(
        t,
        `SELECT (used_at IS NOT NULL) || '|' || length(state_hash) || '|' || substr(code_verifier, 1, 7) FROM connect_states WHERE id = '${s.json.state_id}'`,
      );
      assert.match(st.trim(), /^(1|t|true)\|64\|ENC:v1:$/);

      // one event at the start and one for the callback, naming the connection
      await waitFor(async () => (await connectEvents()).some((e) => e.action === 'callback' && e.subject_id === connId), {
        message: 'the callback event',
      });
      const evs = await connectEvents();
      const okEv = evs.find((e) => e.action === 'callback' && e.subject_id === connId);
      assert.equal(okEv.outcome, 'ok');
      assert.equal(okEv.subject_type, 'connection');
      assert.equal(okEv.detail.app_id, appId);
      assert.equal(okEv.detail.state_id, s.json.state_id);
      const startEv = evs.find((e) => e.action === 'start' && e.detail.state_id === s.json.state_id);
      assert.equal(startEv.outcome, 'ok');
      assert.equal(startEv.subject_id, appId);
      assert.equal(startEv.detail.pkce, true);
    });

    it('client_secret_post without return_url: a small page says connected, no script', async () => {
      const appId = await makeApp('client_secret_post');
      const s = await start(appId, { label: 'page <b>&"quoted"</b>' });
      assert.equal(s.status, 200, s.text);
      const res = await run(s.json.authorize_url);
      assert.equal(res.stoppedAt, null);
      assert.equal(res.status, 200, res.text);
      assert.match(res.headers['content-type'], /^text\/html/);
      assert.match(res.headers['content-security-policy'], /default-src 'none'/);
      assert.equal(res.headers['referrer-policy'], 'no-referrer');
      assert.match(res.text, /Connected/);
      assert.match(res.text, /page &lt;b&gt;&amp;&quot;quoted&quot;&lt;\/b&gt;/, 'the label is escaped');
      assert.doesNotMatch(res.text, /<script/i);
      assert.doesNotMatch(res.text, /<b>/);
    });

    it('a replayed state is refused (state_used), and the event says so', async () => {
      const appId = await makeApp();
      const s = await start(appId, { label: 'replay', return_url: RETURN });
      const res = await run(s.json.authorize_url);
      assert.match(res.stoppedAt.searchParams.get('connection_id'), UUID);
      const exchanges = up.tokenRequests;
      const again = await browse(res.callback, { stop: (u) => u.href.startsWith('https://app.example.test/') });
      assert.equal(again.status, 303);
      assert.equal(again.stoppedAt.searchParams.get('error'), 'state_used');
      assert.equal(again.stoppedAt.searchParams.get('connection_id'), null);
      assert.equal(up.tokenRequests, exchanges, 'no second exchange');
      await waitFor(async () => (await connectEvents()).some((e) => e.detail.reason === 'state_used' && e.detail.state_id === s.json.state_id), {
        message: 'the state_used event',
      });
      const ev = (await connectEvents()).find((e) => e.detail.reason === 'state_used' && e.detail.state_id === s.json.state_id);
      assert.equal(ev.outcome, 'denied');
      assert.equal(ev.detail.stage, 'state');
      assert.equal(ev.subject_id, appId);
    });

    it('an expired state is refused (state_expired) without an exchange', async () => {
      const appId = await makeApp();
      const s = await start(appId, { label: 'late', return_url: RETURN });
      // ten minutes pass: move the row's expiry instead of sleeping
      await storeSql(t, `UPDATE connect_states SET expires_at = created_at - 1 WHERE id = '${s.json.state_id}'`);
      const exchanges = up.tokenRequests;
      const res = await run(s.json.authorize_url);
      assert.equal(res.stoppedAt.searchParams.get('error'), 'state_expired');
      assert.equal(up.tokenRequests, exchanges);
      await waitFor(async () => (await connectEvents()).some((e) => e.detail.reason === 'state_expired' && e.detail.state_id === s.json.state_id), {
        message: 'the state_expired event',
      });
    });

    it('an unknown, missing or duplicated state: a 400 page naming the stage', async () => {
      let r = await request(t, '/connect/callback?state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&code=x');
      assert.equal(r.status, 400);
      assert.match(r.headers['content-type'], /^text\/html/);
      assert.match(r.text, /state_unknown/);
      r = await request(t, '/connect/callback?code=x');
      assert.equal(r.status, 400);
      assert.match(r.text, /missing_state/);
      r = await request(t, '/connect/callback?state=a&state=b&code=x');
      assert.equal(r.status, 400);
      assert.match(r.text, /duplicate_parameter/);
      r = await request(t, `/connect/callback?state=${'<script>'.repeat(3)}`);
      assert.equal(r.status, 400);
      assert.doesNotMatch(r.text, /<script/);
      await waitFor(async () => (await connectEvents()).some((e) => e.detail.reason === 'state_unknown'), { message: 'the state_unknown event' });
    });

    it("the provider's error=access_denied comes back as error=access_denied, with an event", async () => {
      const appId = await makeApp();
      const s = await start(appId, { label: 'declined', return_url: RETURN });
      up.deny = true;
      let res;
      try {
        res = await run(s.json.authorize_url);
      } finally {
        up.deny = false;
      }
      assert.equal(res.stoppedAt.searchParams.get('error'), 'access_denied', res.hops.join(' -> '));
      await waitFor(async () => (await connectEvents()).some((e) => e.detail.state_id === s.json.state_id && e.detail.stage === 'provider'), {
        message: 'the provider-stage event',
      });
      const ev = (await connectEvents()).find((e) => e.detail.state_id === s.json.state_id && e.detail.stage === 'provider');
      assert.equal(ev.detail.reason, 'access_denied');
      assert.equal(ev.outcome, 'failed');
      assert.match(ev.message, /declined/);
    });

    it('the provider checks the PKCE verifier: changed on the way, the exchange fails with invalid_grant', async () => {
      const proxy = await startTokenProxy(up.tokenUrl, (p) => {
        assert.match(p.get('code_verifier'), /^[A-Za-z0-9_-]{43}$/, 'tokend sends its verifier');
        p.set('code_verifier', 'x'.repeat(43));
      });
      proxies.push(proxy);
      const appId = await makeApp('client_secret_basic', { token_url: proxy.url });
      const s = await start(appId, { label: 'pkce', return_url: RETURN });
      const res = await run(s.json.authorize_url);
      assert.equal(res.stoppedAt.searchParams.get('error'), 'token_exchange_failed');
      await waitFor(async () => (await connectEvents()).some((e) => e.detail.state_id === s.json.state_id && e.detail.stage === 'token_exchange'), {
        message: 'the token_exchange event',
      });
      const ev = (await connectEvents()).find((e) => e.detail.state_id === s.json.state_id && e.detail.stage === 'token_exchange');
      assert.equal(ev.detail.reason, 'invalid_grant');
      assert.equal(ev.outcome, 'failed');
      assert.equal(ev.detail.exchange.status, 400);
      assert.doesNotMatch(JSON.stringify(ev), new RegExp(up.clients.basic.secret));
      const n = await storeSql(t, `SELECT count(*) FROM connections WHERE label = 'pkce'`);
      assert.equal(n.trim(), '0');
    });

    it('100 refreshes in a row against the rotating provider: each rotates, nothing is lost', { timeout: 120000 }, async () => {
      const appId = await makeApp('client_secret_basic', { rotates_refresh_tokens: true });
      const s = await start(appId, { label: 'rotations', return_url: RETURN });
      const res = await run(s.json.authorize_url);
      const connId = res.stoppedAt.searchParams.get('connection_id');
      assert.match(connId, UUID);
      const refreshBefore = up.issued.refresh;
      const seen = new Set([last.refresh_token]);
      for (let i = 0; i < 100; i++) {
        const r = await api(t, `/v1/connections/${connId}/refresh`, { method: 'POST' });
        assert.equal(r.status, 200, `refresh ${i + 1}: ${r.text}`);
        assert.equal(r.json.outcome, 'ok', `refresh ${i + 1}: ${r.text}`);
        assert.equal(r.json.rotated, true, `refresh ${i + 1}`);
        assert.ok(!seen.has(last.refresh_token), `refresh ${i + 1}: the provider rotated`);
        seen.add(last.refresh_token);
      }
      assert.equal(up.issued.refresh - refreshBefore, 100);
      // inline: a token asked for longer than the held one lives is refreshed on the way
      const held = last.access_token;
      const inline = await api(t, `/v1/connections/${connId}/token?min_ttl=3700`);
      assert.equal(up.issued.refresh - refreshBefore, 101, inline.text);
      assert.notEqual(last.access_token, held);
      await waitFor(async () => (await allEvents(t, `kind=refresh&source=on_demand&subject=${connId}`)).length === 1, {
        message: 'the on_demand refresh event',
      });
      const tok = await api(t, `/v1/connections/${connId}/token`);
      assert.equal(tok.status, 200, tok.text);
      assert.equal(tok.json.access_token, last.access_token, 'the newest access token is the one held');
      const shown = await api(t, `/v1/connections/${connId}`);
      assert.equal(shown.json.status, 'ok');
      assert.equal(shown.json.failure_count, 0);
      // one refresh event per attempt, all ok
      await waitFor(async () => (await allEvents(t, `kind=refresh&source=manual&subject=${connId}`)).length >= 100, { message: '100 refresh events' });
      const evs = await allEvents(t, `kind=refresh&source=manual&subject=${connId}`);
      assert.equal(evs.length, 100);
      assert.ok(evs.every((e) => e.outcome === 'ok'));
    });

    it("Bitrix24: the portal's domain in the authorization URL, scopes joined with ',', no PKCE", async () => {
      const a = await request(t, '/v1/provider-apps', {
        method: 'POST',
        token: t.token,
        json: { provider: 'bitrix24', name: uniqueId('portal'), client_id: 'local.5f0a1b2c', scopes: ['crm', 'user'], params: { domain: 'acme.bitrix24.com' } },
      });
      assert.equal(a.status, 201, a.text);
      const s = await start(a.json.id, { label: 'portal' });
      assert.equal(s.status, 200, s.text);
      assert.equal(s.json.pkce, false);
      const u = new URL(s.json.authorize_url);
      assert.equal(u.origin + u.pathname, 'https://acme.bitrix24.com/oauth/authorize/');
      assert.equal(u.searchParams.get('scope'), 'crm,user');
      assert.equal(u.searchParams.get('client_id'), 'local.5f0a1b2c');
      assert.equal(u.searchParams.get('code_challenge'), null);
    });

    it('tokend connections connect prints the authorization URL; it connects', async () => {
      const appId = await makeApp('client_secret_post');
      const env = { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token };
      const r = await runCli(['connections', 'connect', appId, '--label', 'from-cli', '--return-url', RETURN], { env });
      assert.equal(r.code, 0, r.stderr);
      const m = /^(http:\/\/127\.0\.0\.1:\d+\/auth\?\S+)$/m.exec(r.stdout);
      assert.ok(m, r.stdout);
      noteSecret(new URL(m[1]).searchParams.get('state'), { kind: 'connect-state' });
      const res = await run(m[1]);
      assert.match(res.stoppedAt.searchParams.get('connection_id'), UUID);
      const j = await runCli(['connections', 'connect', appId, '--label', 'json', '--json'], { env });
      assert.equal(j.code, 0, j.stderr);
      const o = JSON.parse(j.stdout);
      noteSecret(new URL(o.authorize_url).searchParams.get('state'), { kind: 'connect-state' });
      assert.equal(o.redirect_uri, `${t.url}/connect/callback`);
      assert.equal((await runCli(['connections', 'connect', appId], { env })).code, 2, 'no --label');
      assert.equal((await runCli(['connections', 'connect', '--label', 'x'], { env })).code, 2, 'no APP_ID');
      const bad = await runCli(['connections', 'connect', appId, '--label', 'x', '--return-url', 'nope'], { env });
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /return_url/);
    });

    it("another tenant's app, an unknown app, bad bodies: 404 and 400 naming the field", async () => {
      const appId = await makeApp();
      const other = await createTenant(t);
      let r = await start(appId, { label: 'x' }, other.token);
      assert.equal(r.status, 404, r.text);
      assert.equal(r.json.error, 'not_found');
      r = await start('0190b8a0-0000-7000-8000-000000000000', { label: 'x' });
      assert.equal(r.status, 404);
      r = await start('not-a-uuid', { label: 'x' });
      assert.equal(r.status, 404);
      r = await start(appId, { label: 'x', scope: 'more' });
      assert.equal(r.status, 400);
      assert.equal(r.json.error, 'unknown_field');
      assert.equal(r.json.field, 'scope');
      r = await start(appId, {});
      assert.equal(r.status, 400);
      assert.equal(r.json.field, 'label');
      for (const bad of ['javascript:alert(1)', '/relative', 'https://u:p@host/x', 'https://host/x#frag', 'https://host/a b', 'ftp://host/']) {
        r = await start(appId, { label: 'x', return_url: bad });
        assert.equal(r.status, 400, bad);
        assert.equal(r.json.field, 'return_url', bad);
      }
      r = await request(t, `/v1/connect/${appId}/start`, { method: 'POST', json: { label: 'x' } });
      assert.equal(r.status, 401);
      // the other tenant's own app works, and its connection is its own
      const mine = await makeApp('client_secret_post', {}, other.token);
      const s = await start(mine, { label: 'tenant2', return_url: RETURN }, other.token);
      assert.equal(s.status, 200, s.text);
      const res = await run(s.json.authorize_url);
      const connId = res.stoppedAt.searchParams.get('connection_id');
      assert.match(connId, UUID);
      const tn = await storeSql(t, `SELECT tenant_id FROM connections WHERE id = '${connId}'`);
      assert.equal(tn.trim(), other.id);
    });
  });
}
