// auth.test.mjs: operator authentication on /v1 routes: every refusal is a
// 401 with WWW-Authenticate and a reason, the first of each reason from an
// address in a window leaves an event, and no token secret ever shows in
// events, listings or the log.
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { allEvents, api, backends, bumpAuthEpochSql, freshDir, request, seenSecrets, startTokend, stopAndScan, storeSql, uniqueId, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Every 10-character window of the token's random part: none of them may
 * show up anywhere a secret must not be. */
function secretPieces(token) {
  const core = token.slice(4);
  const pieces = [token];
  for (let i = 0; i + 10 <= core.length; i++) pieces.push(core.slice(i, i + 10));
  return pieces;
}

function assertNoSecret(text, tokens, where) {
  for (const tok of tokens)
    for (const piece of secretPieces(tok))
      assert.ok(!text.includes(piece), `${where} contains a piece of a token secret (${tok.slice(0, 8)}...): ${piece}`);
}

/** A copy of token with the character at i replaced by another base62 one. */
function changeChar(token, i) {
  const c = token[i];
  const other = B62[(B62.indexOf(c) + 17) % 62];
  return token.slice(0, i) + other + token.slice(i + 1);
}

for (const backend of backends()) {
  describe(`operator authentication (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let other;
    // Every secret this suite saw, and every request id of a refusal with
    // the reason expected in its event.
    const secrets = [];
    const refusals = [];

    before(async () => {
      // A data dir that tokend itself creates.
      const dataDir = path.join(await freshDir('auth'), 'data');
      // No failure budget, and one coalescing window for the whole suite.
      const args = ['--auth-fail-limit', '0', '--auth-fail-window', '3600'];
      [t, other] = await Promise.all([startTokend({ backend, dataDir, args }), startTokend({ backend })]);
      secrets.push(t.token, other.token);
    });
    after(async () => {
      // the secret scan (data dir, store dump, logs, events), every 10-character piece too
      await Promise.all([stopAndScan(t, seenSecrets(), { window: 10 }), stopAndScan(other, seenSecrets(), { window: 10 })]);
    });

    /** GET /v1/events with the given Authorization (undefined: none);
     * checks the 401 shape and records the refusal. */
    async function refused(auth, reason, label) {
      const rid = uniqueId('auth');
      const opts = { headers: { 'x-request-id': rid } };
      if (auth !== undefined) opts.auth = auth;
      const r = await request(t, '/v1/events', opts);
      assert.equal(r.status, 401, `${label}: ${r.text}`);
      assert.match(r.headers['www-authenticate'] || '', /^Bearer( |$)/, `${label}: WWW-Authenticate`);
      assert.equal(r.json.error, 'unauthenticated', label);
      assert.equal(r.json.reason, reason, `${label}: ${r.text}`);
      assert.equal(typeof r.json.message, 'string');
      assert.ok(r.json.message.length > 0);
      assert.equal(r.json.client_request_id, rid);
      // events carry tokend's own id for the request, given in the body
      refusals.push({ rid: r.json.request_id, reason, label });
      return r;
    }

    it('the root token written by --dev authenticates', async () => {
      assert.match(t.token, /^tko_[0-9A-Za-z]{36}$/);
      // Written once, for its owner only, and its path told.
      assert.equal((await stat(path.join(t.dataDir, 'root-token'))).mode & 0o777, 0o600);
      assert.equal((await stat(t.dataDir)).mode & 0o777, 0o700, 'tokend creates the data dir 0700');
      // --dev keeps the keyring's auto-unseal key in the data dir, for its owner only.
      assert.equal((await stat(path.join(t.dataDir, 'unseal.key'))).mode & 0o777, 0o600);
      assert.ok(t.stderr().includes(path.join(t.dataDir, 'root-token')), 'tokend says where the root token is');
      const r = await api(t, '/v1/whoami');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.name, 'root');
      assert.equal(r.json.role, 'admin');
      // The scheme is case-insensitive.
      assert.equal((await request(t, '/v1/whoami', { auth: `bearer ${t.token}` })).status, 200);
    });

    it('no Authorization header: 401, WWW-Authenticate: Bearer, reason missing', async () => {
      const r = await refused(undefined, 'missing', 'no header');
      assert.match(r.headers['www-authenticate'], /realm="tokend"/);
      await refused('', 'missing', 'empty header');
    });

    it('another scheme is malformed; HTTP Basic (an OAuth client, not built yet) is unsupported', async () => {
      const b = await refused('Basic dXNlcjpwYXNz', 'unsupported', 'Basic');
      assert.match(b.json.message, /this route accepts operator tokens/);
      await refused(`Token ${t.token}`, 'malformed', 'Token scheme');
      await refused('Bearer', 'malformed', 'Bearer without a token');
    });

    it('a damaged token is malformed, and the message does not echo it', async () => {
      const tok = t.token;
      const cases = [
        [`${tok} `, 'trailing space'],
        [`${tok}"`, 'trailing quote'],
        [`"${tok}"`, 'quoted'],
        [tok.slice(0, -1), 'truncated by one'],
        [tok.slice(0, 20), 'truncated to half'],
        [changeChar(tok, 12), 'one character changed'],
        [changeChar(tok, tok.length - 1), 'checksum character changed'],
        [`${tok}x`, 'one character too many'],
        [`${tok.slice(0, 10)}-${tok.slice(11)}`, 'a character outside base62'],
      ];
      for (const [bad, label] of cases) {
        const r = await refused(`Bearer ${bad}`, 'malformed', label);
        assertNoSecret(r.text, [tok], `the 401 body for ${label}`);
        assert.equal(r.headers['www-authenticate'], 'Bearer realm="tokend", error="invalid_token"');
      }
      // a client token (tkc_): a kind operator routes do not accept
      const c = await refused(`Bearer tkc_${tok.slice(4)}`, 'kind_not_accepted', 'another kind of token');
      assertNoSecret(c.text, [tok], 'the 401 body for a client token');
      assert.match(c.json.message, /this route accepts operator tokens .*presented a client token/);
    });

    it("a well-formed token of another tokend is unknown", async () => {
      assert.equal((await api(other, '/v1/whoami')).status, 200, 'it works where it was issued');
      const r = await refused(`Bearer ${other.token}`, 'unknown', 'foreign token');
      assertNoSecret(r.text, [other.token], 'the 401 body for a foreign token');
    });

    it('an issued token works until it is revoked, then it is revoked', async () => {
      const c = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'ci-bot', role: 'operator' } });
      assert.equal(c.status, 201, c.text);
      assert.match(c.json.token, /^tko_[0-9A-Za-z]{36}$/);
      assert.equal(c.json.name, 'ci-bot');
      assert.equal(c.json.role, 'operator');
      assert.equal(c.json.expires_at, null);
      secrets.push(c.json.token);
      const who = await request(t, '/v1/whoami', { token: c.json.token });
      assert.equal(who.status, 200, who.text);
      assert.equal(who.json.token_id, c.json.id);
      assert.equal(who.json.name, 'ci-bot');
      assert.equal((await request(t, '/v1/events?limit=1', { token: c.json.token })).status, 200);

      const d = await api(t, `/v1/operator-tokens/${c.json.id}`, { method: 'DELETE' });
      assert.equal(d.status, 200, d.text);
      assert.deepEqual(d.json, { id: c.json.id, revoked: true });
      const r = await refused(`Bearer ${c.json.token}`, 'revoked', 'revoked token');
      assertNoSecret(r.text, [c.json.token], 'the 401 body for a revoked token');
      // Revoking again, or an unknown id: 404.
      assert.equal((await api(t, `/v1/operator-tokens/${c.json.id}`, { method: 'DELETE' })).status, 404);
      assert.equal((await api(t, '/v1/operator-tokens/00000000-0000-7000-8000-000000000000', { method: 'DELETE' })).status, 404);
      assert.equal((await api(t, '/v1/operator-tokens/not-a-uuid', { method: 'DELETE' })).status, 404);
    });

    it('a token with expires_in works until then, and is expired after', async () => {
      const before = Date.now();
      const c = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'short-lived', role: 'viewer', expires_in: 3600 } });
      assert.equal(c.status, 201, c.text);
      secrets.push(c.json.token);
      const exp = Date.parse(c.json.expires_at);
      assert.ok(exp >= before + 3600e3 - 1000 && exp <= Date.now() + 3600e3 + 1000, `expires_at ${c.json.expires_at}`);
      assert.equal((await request(t, '/v1/whoami', { token: c.json.token })).status, 200);
      // Time passes (in the store), and the tenant's auth epoch moves as
      // tokend's own writers make it: the node's authentication cache lets
      // go of the token within a second.
      await storeSql(t, `UPDATE operator_tokens SET expires_at = ${Date.now() - 1000} WHERE id = '${c.json.id}'; ${bumpAuthEpochSql(c.json.id)}`);
      const r = await waitFor(
        async () => {
          const x = await request(t, '/v1/events', { token: c.json.token, headers: { 'x-request-id': uniqueId('auth') } });
          return x.status !== 200 && x;
        },
        { timeoutMs: 5000, message: 'the cached token to be refused' },
      );
      assert.equal(r.status, 401, r.text);
      assert.equal(r.json.reason, 'expired', r.text);
      refusals.push({ rid: r.json.request_id, reason: 'expired', label: 'expired token' });
      assertNoSecret(r.text, [c.json.token], 'the 401 body for an expired token');
    });

    it('a viewer reads but cannot issue or revoke tokens (403)', async () => {
      const c = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'dashboard', role: 'viewer' } });
      assert.equal(c.status, 201, c.text);
      secrets.push(c.json.token);
      const viewer = c.json.token;
      assert.equal((await request(t, '/v1/events?limit=1', { token: viewer })).status, 200);
      const p = await request(t, '/v1/operator-tokens', { method: 'POST', token: viewer, json: { name: 'escalate', role: 'admin' } });
      assert.equal(p.status, 403, p.text);
      assert.equal(p.json.error, 'forbidden');
      const d = await request(t, `/v1/operator-tokens/${c.json.id}`, { method: 'DELETE', token: viewer });
      assert.equal(d.status, 403, d.text);
      const list = await api(t, '/v1/operator-tokens');
      assert.ok(!list.json.tokens.some((x) => x.name === 'escalate'), 'nothing was issued');
      assert.ok(list.json.tokens.some((x) => x.id === c.json.id && x.revoked_at === null), 'the viewer token was not revoked');
    });

    it('a token in the query string or the path is not accepted (and not logged)', async () => {
      const rid = uniqueId('query');
      const q = await request(t, `/v1/events?access_token=${t.token}`, { headers: { 'x-request-id': rid } });
      assert.equal(q.status, 401);
      assert.equal(q.json.reason, 'missing');
      refusals.push({ rid: q.json.request_id, reason: 'missing', label: 'token in the query string' });
      const p = await request(t, `/v1/${t.token}`);
      assert.equal(p.status, 404);
    });

    it('the first refusal of each reason is an operator/authenticate event, outcome denied; repeats are not', async () => {
      assert.ok(refusals.length >= 15, `${refusals.length} refusals recorded`);
      const events = await allEvents(t, 'kind=operator&action=authenticate');
      const byTrace = new Map(events.map((e) => [e.trace_id, e]));
      const firsts = new Map();
      for (const f of refusals) if (!firsts.has(f.reason)) firsts.set(f.reason, f);
      assert.deepEqual([...firsts.keys()].sort(), ['expired', 'kind_not_accepted', 'malformed', 'missing', 'revoked', 'unknown', 'unsupported']);
      for (const { rid, reason, label } of firsts.values()) {
        const ev = byTrace.get(rid);
        assert.ok(ev, `an event for the refusal "${label}" (request id ${rid})`);
        assert.equal(ev.kind, 'operator');
        assert.equal(ev.action, 'authenticate');
        assert.equal(ev.outcome, 'denied', label);
        assert.equal(ev.detail.reason, reason, label);
        assert.equal(ev.detail.route, '/v1/events', label);
        assert.equal(ev.detail.method, 'GET', label);
        assert.equal(ev.detail.remote, '127.0.0.1', label);
      }
      // One event per reason and window from this address, nothing else.
      const denied = await allEvents(t, 'kind=operator&action=authenticate&outcome=denied');
      assert.equal(denied.length, firsts.size, JSON.stringify(denied.map((e) => e.detail)));
    });

    it('no token secret appears in events or in the token listing (only previews)', async () => {
      const tokens = secrets.filter(Boolean);
      let cursor = null;
      let pages = 0;
      do {
        const r = await api(t, `/v1/events?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
        assert.equal(r.status, 200);
        assertNoSecret(r.text, tokens, 'GET /v1/events');
        cursor = r.json.next_cursor;
        pages++;
      } while (cursor);
      assert.ok(pages > 1);
      const l = await api(t, '/v1/operator-tokens');
      assert.equal(l.status, 200);
      assertNoSecret(l.text, tokens, 'GET /v1/operator-tokens');
      assert.ok(l.json.tokens.length >= 3);
      const root = l.json.tokens.find((x) => x.name === 'root');
      assert.ok(root);
      assert.equal(root.preview, `${t.token.slice(0, 8)}...${t.token.slice(-4)}`);
      for (const x of l.json.tokens) {
        assert.match(x.preview, /^tko_[0-9A-Za-z]{4}\.\.\.[0-9A-Za-z]{4}$/);
        assert.equal(x.token, undefined);
        assert.equal(x.token_hash, undefined);
      }
    });
  });
}
