// clients.test.mjs: machine clients and client tokens (issue 14 items 1-3).
// /v1/clients CRUD (hostile bodies, another tenant's is 404, a viewer reads
// but cannot write), client tokens (issued once, listed by preview, revoked,
// rotated with a grace period during which the old one still works), and
// validation through POST /v1/tokens/validate (an operator) and GET
// /v1/tokens/validate (the token itself): every reason, the warnings for
// whitespace, newlines and quotes, a checksum failure without a store
// lookup, 503 sealed (never 401) while sealed; a suspension on node A
// refuses on node B within one second (two nodes on PostgreSQL, and on one
// SQLite file); the tokend clients CLI.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  allEvents,
  api,
  backends,
  BIN,
  createPgDatabase,
  createTenant,
  freshDir,
  metric,
  request,
  runCli,
  scrape,
  startTokend,
  stopAndScan,
  storeSql,
  uniqueId,
  waitFor,
  SUITE_TIMEOUT_MS,
} from './lib/tokend.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const NO_SUCH_ID = '0190a000-0000-7000-8000-000000000099';
const hasPg = backends().includes('postgres');

/** SQL that bumps the auth epoch of the tenant of client token tokenId, as
 * tokend's writers do: a test that changes a row behind tokend's back
 * appends it so that the authentication cache lets go. */
function bumpSql(tokenId) {
  return (
    'UPDATE auth_clock SET seq = seq + 1 WHERE id = 1; ' +
    `UPDATE tenants SET auth_seq = (SELECT seq FROM auth_clock WHERE id = 1) WHERE id = (SELECT tenant_id FROM client_tokens WHERE id = '${tokenId}');`
  );
}

/** Run the CLI with input on stdin (the environment without TOKEND_*, plus env). */
function cliWithStdin(args, input, env) {
  const clean = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TOKEND_')) clean[k] = v;
  return new Promise((resolve) => {
    const p = execFile(BIN, args, { env: { ...clean, ...env }, timeout: 30000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code : 0, stdout, stderr }),
    );
    p.stdin.end(input);
  });
}

function changeChar(s, i) {
  const c = s[i] === 'A' ? 'B' : 'A';
  return s.slice(0, i) + c + s.slice(i + 1);
}

async function newClient(t, body = {}, token = t.token) {
  const r = await request(t, '/v1/clients', { method: 'POST', token, json: { name: uniqueId('client'), ...body } });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

async function newToken(t, clientId, body = {}, token = t.token) {
  const r = await request(t, `/v1/clients/${clientId}/tokens`, { method: 'POST', token, json: { name: 'agent', ...body } });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

/** POST /v1/tokens/validate as the node's operator (or opts.token). */
async function validate(t, token, opts = {}) {
  const r = await request(t, '/v1/tokens/validate', { method: 'POST', token: opts.as ?? t.token, json: token === undefined ? {} : { token } });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

/** GET /v1/tokens/validate with auth as the Authorization header. */
async function self(t, auth) {
  const r = await request(t, '/v1/tokens/validate', { auth });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

function assertInvalid(v, reason, what) {
  assert.equal(v.valid, false, `${what}: ${JSON.stringify(v)}`);
  assert.equal(v.error, 'invalid_token', what);
  assert.equal(v.reason, reason, `${what}: ${JSON.stringify(v)}`);
  assert.equal(typeof v.message, 'string');
  assert.ok(Array.isArray(v.warnings));
}

for (const backend of backends()) {
  describe(`clients and client tokens (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let viewer;
    let other;
    before(async () => {
      // agents go stale after 2 s without a heartbeat
      t = await startTokend({ backend, args: ['--auth-fail-limit', '0', '--agent-heartbeat-interval', '1', '--agent-stale-after', '2'] });
      const v = await request(t, '/v1/operator-tokens', { method: 'POST', token: t.token, json: { name: 'v', role: 'viewer' } });
      assert.equal(v.status, 201, v.text);
      viewer = v.json.token;
      other = await createTenant(t);
    });
    after(() => stopAndScan(t));

    it('clients: create, show, list by status, update; hostile bodies name the field', async () => {
      const c = await newClient(t, { email: 'ops@example.com', metadata: { team: 'edge', region: 'eu-1' } });
      assert.match(c.id, UUID);
      assert.equal(c.status, 'active');
      assert.equal(c.email, 'ops@example.com');
      assert.deepEqual(c.metadata, { region: 'eu-1', team: 'edge' });
      for (const k of ['created_at', 'updated_at']) assert.match(c[k], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(c.status_changed_at, null);
      const bare = await newClient(t);
      assert.equal(bare.email, null);
      assert.deepEqual(bare.metadata, {});

      const g = await api(t, `/v1/clients/${c.id}`);
      assert.equal(g.status, 200, g.text);
      assert.deepEqual(g.json, c);

      const p = await request(t, `/v1/clients/${c.id}`, { method: 'PATCH', token: t.token, json: { status: 'suspended', name: 'Acme Agents' } });
      assert.equal(p.status, 200, p.text);
      assert.equal(p.json.status, 'suspended');
      assert.equal(p.json.name, 'Acme Agents');
      assert.ok(p.json.status_changed_at);
      const same = await request(t, `/v1/clients/${c.id}`, { method: 'PATCH', token: t.token, json: { status: 'suspended' } });
      assert.equal(same.status, 200);

      const susp = await api(t, '/v1/clients?status=suspended');
      assert.equal(susp.status, 200, susp.text);
      assert.ok(susp.json.clients.some((x) => x.id === c.id));
      assert.ok(susp.json.clients.every((x) => x.status === 'suspended'));
      const all = await api(t, '/v1/clients?limit=1');
      assert.equal(all.json.clients.length, 1);
      assert.ok(all.json.next_cursor);
      const page2 = await api(t, `/v1/clients?limit=1&cursor=${all.json.next_cursor}`);
      assert.equal(page2.status, 200);
      assert.notEqual(page2.json.clients[0].id, all.json.clients[0].id);
      for (const q of ['status=gone', 'limit=0', 'limit=x', 'cursor=nope', 'status=active&status=disabled']) {
        const r = await api(t, `/v1/clients?${q}`);
        assert.equal(r.status, 400, `${q}: ${r.text}`);
      }

      const bad = [
        [{}, 'missing_field', 'name'],
        [{ name: '' }, 'invalid_field', 'name'],
        [{ name: 7 }, 'invalid_field', 'name'],
        [{ name: 'a'.repeat(129) }, 'invalid_field', 'name'],
        [{ name: 'x\u202e' }, 'invalid_field', 'name'],
        [{ name: 'x', email: 'nope' }, 'invalid_field', 'email'],
        [{ name: 'x', email: 'a b@c' }, 'invalid_field', 'email'],
        [{ name: 'x', email: 5 }, 'invalid_field', 'email'],
        [{ name: 'x', status: 'gone' }, 'invalid_field', 'status'],
        [{ name: 'x', metadata: [] }, 'invalid_field', 'metadata'],
        [{ name: 'x', metadata: { k: 1 } }, 'invalid_field', 'metadata'],
        [{ name: 'x', metadata: { 'bad key': 'v' } }, 'invalid_field', 'metadata'],
        [{ name: 'x', metadata: { k: 'v'.repeat(513) } }, 'invalid_field', 'metadata'],
        [{ name: 'x', metadata: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])) }, 'invalid_field', 'metadata'],
        [{ name: 'x', owner: 'me' }, 'unknown_field', 'owner'],
      ];
      for (const [body, code, field] of bad) {
        const r = await request(t, '/v1/clients', { method: 'POST', token: t.token, json: body });
        assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${r.text}`);
        assert.equal(r.json.error, code, r.text);
        assert.equal(r.json.field, field, r.text);
      }
      for (const raw of ['[1]', '{"name": "a\\u0000b"}', '{"name": "a", "name": "b"}', '{', '"x"', '{"name": {"a": {"b": {"c": {}}}}}']) {
        const r = await request(t, '/v1/clients', { method: 'POST', token: t.token, body: raw });
        assert.equal(r.status, 400, `${raw}: ${r.text}`);
      }
      const up = await request(t, `/v1/clients/${c.id}`, { method: 'PATCH', token: t.token, json: { status: 'asleep' } });
      assert.equal(up.status, 400);
      assert.equal(up.json.field, 'status');
      assert.equal((await request(t, `/v1/clients/${c.id}`, { method: 'PATCH', token: t.token, json: { id: NO_SUCH_ID } })).status, 400);

      // events of the writes
      const evs = await allEvents(t, `kind=client&subject=${c.id}`);
      assert.deepEqual(evs.map((e) => e.action).sort(), ['create', 'status_change']);
    });

    it("another tenant's client is 404; unknown and malformed ids are 404; a viewer reads but cannot write", async () => {
      const c = await newClient(t);
      const tok = await newToken(t, c.id);
      for (const [method, p, json] of [
        ['GET', `/v1/clients/${c.id}`],
        ['PATCH', `/v1/clients/${c.id}`, { status: 'disabled' }],
        ['GET', `/v1/clients/${c.id}/tokens`],
        ['POST', `/v1/clients/${c.id}/tokens`, { name: 'x' }],
        ['DELETE', `/v1/clients/${c.id}/tokens/${tok.id}`],
        ['POST', `/v1/clients/${c.id}/tokens/${tok.id}/rotate`, {}],
      ]) {
        const r = await request(t, p, { method, token: other.token, json });
        assert.equal(r.status, 404, `${method} ${p} by another tenant: ${r.text}`);
      }
      assert.ok(!(await request(t, '/v1/clients', { token: other.token })).json.clients.some((x) => x.id === c.id));
      // the other tenant's operator asking about this tenant's token: unknown
      assertInvalid(await validate(t, tok.token, { as: other.token }), 'unknown', 'another tenant');
      assert.equal((await self(t, `Bearer ${tok.token}`)).valid, true, 'still fine in its own tenant');
      for (const p of [`/v1/clients/${NO_SUCH_ID}`, '/v1/clients/not-an-id', `/v1/clients/${NO_SUCH_ID}/tokens`, `/v1/clients/${c.id}/tokens/${NO_SUCH_ID}/rotate`]) {
        const r = await api(t, p, { method: p.endsWith('rotate') ? 'POST' : 'GET' });
        assert.equal(r.status, 404, `${p}: ${r.text}`);
      }
      // a viewer reads but does not write
      assert.equal((await request(t, `/v1/clients/${c.id}`, { token: viewer })).status, 200);
      assert.equal((await request(t, `/v1/clients/${c.id}/tokens`, { token: viewer })).status, 200);
      assert.equal((await validate(t, tok.token, { as: viewer })).valid, true);
      for (const [method, p, json] of [
        ['POST', '/v1/clients', { name: 'v' }],
        ['PATCH', `/v1/clients/${c.id}`, { status: 'disabled' }],
        ['POST', `/v1/clients/${c.id}/tokens`, { name: 'x' }],
        ['DELETE', `/v1/clients/${c.id}/tokens/${tok.id}`],
        ['POST', `/v1/clients/${c.id}/tokens/${tok.id}/rotate`, {}],
      ]) {
        const r = await request(t, p, { method, token: viewer, json });
        assert.equal(r.status, 403, `${method} ${p} by a viewer: ${r.text}`);
        assert.equal(r.json.error, 'forbidden');
      }
      // a client token is no operator, and an operator token no client token
      const r1 = await request(t, '/v1/clients', { token: tok.token });
      assert.equal(r1.status, 401);
      assert.equal(r1.json.reason, 'kind_not_accepted');
      const r2 = await request(t, '/v1/tokens/validate', { token: t.token });
      assert.equal(r2.status, 401, r2.text);
      assert.equal(r2.json.reason, 'kind_not_accepted');
      assert.ok(r2.headers['www-authenticate']);
    });

    it('tokens: issued once, listed by preview; every validation reason through both routes', async () => {
      const c = await newClient(t, { email: 'fleet@example.com' });
      const tok = await newToken(t, c.id, { name: 'fleet-1', expires_in: 3600 });
      assert.match(tok.token, /^tkc_[A-Za-z0-9]{36}$/);
      assert.match(tok.id, UUID);
      assert.equal(tok.status, 'active');
      assert.ok(tok.expires_at);
      const list = await api(t, `/v1/clients/${c.id}/tokens`);
      assert.equal(list.status, 200, list.text);
      const row = list.json.tokens.find((x) => x.id === tok.id);
      assert.equal(row.token, undefined, 'never the secret again');
      assert.ok(!list.text.includes(tok.token));
      assert.equal(row.preview, tok.preview);
      for (const k of ['status', 'created_at', 'last_used_at', 'expires_at']) assert.ok(k in row, k);

      // valid, both ways, in the shape the agents read
      const ok = await validate(t, tok.token);
      assert.deepEqual(Object.keys(ok).sort(), ['client_id', 'email', 'expires_at', 'name', 'token_id', 'valid', 'warnings']);
      assert.equal(ok.valid, true);
      assert.equal(ok.client_id, c.id);
      assert.equal(ok.name, c.name);
      assert.equal(ok.email, 'fleet@example.com');
      assert.equal(ok.token_id, tok.id);
      assert.equal(ok.expires_at, tok.expires_at);
      assert.deepEqual(ok.warnings, []);
      for (let i = 0; i < 3; i++) assert.deepEqual(await self(t, `Bearer ${tok.token}`), ok);

      // missing
      assertInvalid(await validate(t, undefined), 'missing', 'POST without token');
      assertInvalid(await validate(t, ''), 'missing', 'POST empty');
      assertInvalid(await validate(t, ' \n'), 'missing', 'POST whitespace only');
      assertInvalid(await self(t, undefined), 'missing', 'GET without Authorization');
      assertInvalid(await self(t, 'Bearer '), 'missing', 'GET Bearer only');
      assertInvalid(await self(t, 'Bearer'), 'missing', 'GET Bearer without a space');
      assertInvalid(await self(t, `Token ${tok.token}`), 'malformed', 'GET another scheme');
      assertInvalid(await self(t, 'garbage'), 'malformed', 'GET garbage');
      const basic = await request(t, '/v1/tokens/validate', { auth: 'Basic dXNlcjpwYXNz' });
      assert.equal(basic.status, 401, 'HTTP Basic: a kind not built yet');
      assert.equal(basic.json.reason, 'unsupported');
      // malformed: a checksum failure, decided without the store
      for (const [bad, label] of [
        [changeChar(tok.token, 12), 'one character changed'],
        [tok.token.slice(0, -1), 'truncated'],
        [`${tok.token}x`, 'one too many'],
        [`tko_${tok.token.slice(4)}`, 'another kind'],
        ['garbage', 'garbage'],
        [`"${tok.token}`, 'an unmatched quote'],
      ]) {
        const v = await validate(t, bad);
        assertInvalid(v, 'malformed', label);
        assert.ok(!JSON.stringify(v).includes(tok.token.slice(4, 30)), `${label}: no echo`);
        // GET: a tko_ token is an operator token, not accepted there (401)
        if (!bad.startsWith('tko_')) assertInvalid(await self(t, `Bearer ${bad}`), 'malformed', `GET ${label}`);
      }
      // a long input is malformed, not a 400 or a crash
      assertInvalid(await validate(t, 'tkc_' + 'A'.repeat(5000)), 'malformed', 'long');
      const big = await request(t, '/v1/tokens/validate', { method: 'POST', token: t.token, json: { token: 5 } });
      assert.equal(big.status, 400);
      assert.equal(big.json.field, 'token');
      const extra = await request(t, '/v1/tokens/validate', { method: 'POST', token: t.token, json: { token: tok.token, x: 1 } });
      assert.equal(extra.status, 400);
      assert.equal(extra.json.error, 'unknown_field');

      // suspended, disabled, active again
      const patch = (status) => request(t, `/v1/clients/${c.id}`, { method: 'PATCH', token: t.token, json: { status } });
      assert.equal((await patch('suspended')).status, 200);
      assertInvalid(await validate(t, tok.token), 'client_suspended', 'suspended (POST)');
      const s1 = await self(t, `Bearer ${tok.token}`);
      assertInvalid(s1, 'client_suspended', 'suspended (GET)');
      assert.match(s1.message, /suspended/);
      assert.equal((await patch('disabled')).status, 200);
      assertInvalid(await self(t, `Bearer ${tok.token}`), 'client_inactive', 'disabled');
      assertInvalid(await validate(t, tok.token), 'client_inactive', 'disabled (POST)');
      assert.equal((await patch('active')).status, 200);
      assert.equal((await self(t, `Bearer ${tok.token}`)).valid, true);

      // expired: the row's expiry set in the past behind tokend's back
      const tx = await newToken(t, c.id);
      assert.equal((await self(t, `Bearer ${tx.token}`)).valid, true);
      await storeSql(t, `UPDATE client_tokens SET expires_at = ${Date.now() - 1000} WHERE id = '${tx.id}'; ${bumpSql(tx.id)}`);
      await waitFor(async () => (await self(t, `Bearer ${tx.token}`)).reason === 'expired', { timeoutMs: 3000, intervalMs: 50, message: 'expired' });
      assertInvalid(await validate(t, tx.token), 'expired', 'expired (POST)');
      assert.equal((await api(t, `/v1/clients/${c.id}/tokens`)).json.tokens.find((x) => x.id === tx.id).status, 'expired');

      // revoked at once on this node
      const del = await api(t, `/v1/clients/${c.id}/tokens/${tok.id}`, { method: 'DELETE' });
      assert.equal(del.status, 200, del.text);
      assert.deepEqual(del.json, { id: tok.id, revoked: true });
      assertInvalid(await self(t, `Bearer ${tok.token}`), 'revoked', 'revoked (GET)');
      assertInvalid(await validate(t, tok.token), 'revoked', 'revoked (POST)');
      assert.equal((await api(t, `/v1/clients/${c.id}/tokens/${tok.id}`, { method: 'DELETE' })).status, 404, 'revoked twice');

      // unknown: a well-formed token whose row is gone
      const tu = await newToken(t, c.id);
      await storeSql(t, `${bumpSql(tu.id)} DELETE FROM client_tokens WHERE id = '${tu.id}';`);
      await waitFor(async () => (await self(t, `Bearer ${tu.token}`)).reason === 'unknown', { timeoutMs: 3000, intervalMs: 50, message: 'unknown' });
      assertInvalid(await validate(t, tu.token), 'unknown', 'unknown (POST)');
    });

    it('whitespace, newlines and quotes around a token are stripped and reported as warnings', async () => {
      const c = await newClient(t);
      const tok = (await newToken(t, c.id)).token;
      const cases = [
        [` ${tok}`, ['leading_whitespace']],
        [`\t${tok}`, ['leading_whitespace']],
        [`\n${tok}`, ['leading_newline']],
        [`${tok} `, ['trailing_whitespace']],
        [`${tok}\n`, ['trailing_newline']],
        [`${tok}\r\n`, ['trailing_crlf']],
        [`"${tok}"`, ['surrounding_quotes']],
        [`'${tok}'`, ['surrounding_quotes']],
        [` "${tok}"\r\n`, ['leading_whitespace', 'trailing_crlf', 'surrounding_quotes']],
      ];
      for (const [text, warnings] of cases) {
        const v = await validate(t, text);
        assert.equal(v.valid, true, `${JSON.stringify(text.replace(tok, 'TOKEN'))}: ${JSON.stringify(v)}`);
        assert.deepEqual(v.warnings.sort(), warnings.sort(), JSON.stringify(text.replace(tok, 'TOKEN')));
      }
      // and in the Authorization header, as far as HTTP carries them
      assert.deepEqual((await self(t, `Bearer   ${tok}`)).warnings, ['leading_whitespace']);
      assert.deepEqual((await self(t, `Bearer ${tok}\t`)).warnings, ['trailing_whitespace']);
      assert.deepEqual((await self(t, `Bearer "${tok}"`)).warnings, ['surrounding_quotes']);
      // a failure keeps its warnings
      const bad = await validate(t, ` ${changeChar(tok, 10)}\n`);
      assertInvalid(bad, 'malformed', 'damaged and padded');
      assert.deepEqual(bad.warnings.sort(), ['leading_whitespace', 'trailing_newline']);
    });

    it('rotate with grace: the old token works until the grace ends, then is revoked', async () => {
      const c = await newClient(t);
      const old = await newToken(t, c.id, { name: 'rot', expires_in: 7200 });
      assert.equal((await self(t, `Bearer ${old.token}`)).valid, true); // cached
      const r = await request(t, `/v1/clients/${c.id}/tokens/${old.id}/rotate`, { method: 'POST', token: t.token, json: { grace: 3600 } });
      assert.equal(r.status, 201, r.text);
      assert.match(r.json.token, /^tkc_/);
      assert.equal(r.json.replaces, old.id);
      assert.equal(r.json.name, 'rot');
      assert.ok(Date.parse(r.json.grace_ends_at) > Date.now() + 3500 * 1000);
      assert.ok(r.json.expires_at, 'the lifetime carries over');
      // both work; the old one says when it stops
      const vOld = await self(t, `Bearer ${old.token}`);
      assert.equal(vOld.valid, true);
      assert.equal(vOld.expires_at, r.json.grace_ends_at);
      assert.equal((await self(t, `Bearer ${r.json.token}`)).valid, true);
      const rows = (await api(t, `/v1/clients/${c.id}/tokens`)).json.tokens;
      assert.equal(rows.find((x) => x.id === old.id).status, 'rotating');
      assert.equal(rows.find((x) => x.id === old.id).replaced_by, r.json.id);
      // rotating it again: 409
      const again = await request(t, `/v1/clients/${c.id}/tokens/${old.id}/rotate`, { method: 'POST', token: t.token, json: { grace: 10 } });
      assert.equal(again.status, 409, again.text);
      assert.equal(again.json.error, 'already_rotated');
      // the grace ends (its time set in the past): revoked
      await storeSql(t, `UPDATE client_tokens SET grace_ends_at = ${Date.now() - 1000} WHERE id = '${old.id}'; ${bumpSql(old.id)}`);
      const gone = await waitFor(
        async () => {
          const v = await self(t, `Bearer ${old.token}`);
          return v.valid === false && v;
        },
        { timeoutMs: 3000, intervalMs: 50, message: 'the old token to stop after its grace' },
      );
      assertInvalid(gone, 'revoked', 'after the grace');
      assert.match(gone.message, /rotated/);
      assert.equal((await self(t, `Bearer ${r.json.token}`)).valid, true);
      // grace 0 (an empty body): the old one stops at once
      const r2 = await request(t, `/v1/clients/${c.id}/tokens/${r.json.id}/rotate`, { method: 'POST', token: t.token, body: '' });
      assert.equal(r2.status, 201, r2.text);
      assertInvalid(await self(t, `Bearer ${r.json.token}`), 'revoked', 'grace 0');
      assert.equal((await self(t, `Bearer ${r2.json.token}`)).valid, true);
      for (const body of [{ grace: -1 }, { grace: 'x' }, { grace: 99999999 }, { grace: 1, extra: 1 }]) {
        const b = await request(t, `/v1/clients/${c.id}/tokens/${r2.json.id}/rotate`, { method: 'POST', token: t.token, json: body });
        assert.equal(b.status, 400, `${JSON.stringify(body)}: ${b.text}`);
      }
      const evs = await allEvents(t, 'kind=client&action=token_rotate');
      assert.ok(evs.some((e) => e.subject_id === r.json.id && e.detail.replaces === old.id));
    });

    it('token bodies: hostile input names the field; failures are events, successes metrics; last_used_at is written', async () => {
      const c = await newClient(t);
      for (const [body, code, field] of [
        [{}, 'missing_field', 'name'],
        [{ name: 3 }, 'invalid_field', 'name'],
        [{ name: 'x'.repeat(65) }, 'invalid_field', 'name'],
        [{ name: 'x', expires_in: 5 }, 'invalid_field', 'expires_in'],
        [{ name: 'x', expires_in: '60' }, 'invalid_field', 'expires_in'],
        [{ name: 'x', token: 'tkc_x' }, 'unknown_field', 'token'],
      ]) {
        const r = await request(t, `/v1/clients/${c.id}/tokens`, { method: 'POST', token: t.token, json: body });
        assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
        assert.equal(r.json.error, code);
        assert.equal(r.json.field, field);
      }
      const tok = await newToken(t, c.id);
      assert.equal((await self(t, `Bearer ${tok.token}`)).valid, true);
      // a storm of one failure: coalesced, not one row each
      const bad = changeChar(tok.token, 8);
      for (let i = 0; i < 20; i++) assertInvalid(await self(t, `Bearer ${bad}`), 'malformed', 'storm');
      const evs = await waitFor(
        async () => {
          const e = (await allEvents(t, 'kind=validate&outcome=denied')).filter((x) => x.detail.reason === 'malformed' && x.detail.route === '/v1/tokens/validate');
          const n = e.reduce((s, x) => s + (x.detail.count ?? 1), 0);
          return n >= 20 && e;
        },
        { timeoutMs: 10000, message: 'the storm to be counted' },
      );
      assert.ok(evs.length < 20, `${evs.length} events for 20 failures`);
      assert.equal(evs[0].action, 'validate');
      assert.ok(evs[0].detail.remote);
      // a refused well-formed token's event names it by preview, never in clear
      await request(t, `/v1/clients/${c.id}`, { method: 'PATCH', token: t.token, json: { status: 'disabled' } });
      assertInvalid(await self(t, `Bearer ${tok.token}`), 'client_inactive', 'disabled');
      const ev = await waitFor(async () => (await allEvents(t, 'kind=validate')).find((x) => x.detail.reason === 'client_inactive' && x.subject_id === tok.id), { timeoutMs: 10000, message: 'the client_inactive event' });
      assert.equal(ev.detail.preview, tok.preview);
      assert.equal(ev.detail.client_id, c.id);
      assert.equal(ev.subject_type, 'client_token');
      assert.ok(!JSON.stringify(ev).includes(tok.token));
      const m = await scrape(t);
      assert.ok(metric(m, 'tokend_validations_total', { outcome: 'valid', reason: 'none' }) >= 1);
      assert.ok(metric(m, 'tokend_validations_total', { outcome: 'invalid', reason: 'malformed' }) >= 20);
      // last_used_at, written by the background flush
      await request(t, `/v1/clients/${c.id}`, { method: 'PATCH', token: t.token, json: { status: 'active' } });
      assert.equal((await self(t, `Bearer ${tok.token}`)).valid, true);
      await waitFor(async () => (await api(t, `/v1/clients/${c.id}/tokens`)).json.tokens.find((x) => x.id === tok.id).last_used_at, { timeoutMs: 20000, intervalMs: 250, message: 'last_used_at' });
    });

    it('the CLI: tokend clients create, list, show, update, suspend, activate, disable', async () => {
      const env = { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token };
      const name = uniqueId('cli');
      const cr = await runCli(['clients', 'create', '--name', name, '--email', 'cli@example.com', '--meta', 'team=edge', '--json'], { env });
      assert.equal(cr.code, 0, cr.stderr);
      const c = JSON.parse(cr.stdout);
      assert.equal(c.name, name);
      assert.deepEqual(c.metadata, { team: 'edge' });
      const ls = await runCli(['clients', 'list'], { env });
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, new RegExp(c.id));
      for (const [verb, status] of [['suspend', 'suspended'], ['disable', 'disabled'], ['activate', 'active']]) {
        const r = await runCli(['clients', verb, c.id], { env });
        assert.equal(r.code, 0, r.stderr);
        assert.equal((await api(t, `/v1/clients/${c.id}`)).json.status, status);
      }
      const up = await runCli(['clients', 'update', c.id, '--name', 'renamed', '--json'], { env });
      assert.equal(up.code, 0, up.stderr);
      assert.equal(JSON.parse(up.stdout).name, 'renamed');
      const sh = await runCli(['clients', 'show', c.id], { env });
      assert.equal(sh.code, 0, sh.stderr);
      assert.match(sh.stdout, /renamed/);
      const bad = await runCli(['clients', 'update', c.id, '--status', 'asleep'], { env });
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /status/);
      const usage = await runCli(['clients', 'frobnicate'], { env });
      assert.equal(usage.code, 2);
      const missing = await runCli(['clients', 'show', NO_SUCH_ID], { env });
      assert.equal(missing.code, 1);
    });

    it('agents: register (idempotent), heartbeat, go stale, come back; refusals say why', async () => {
      const c = await newClient(t);
      const tok = await newToken(t, c.id);
      const reg = (body, auth = `Bearer ${tok.token}`) => request(t, '/v1/agents/register', { method: 'POST', auth, json: body });
      const beat = (id, body, auth = `Bearer ${tok.token}`) => request(t, `/v1/agents/${id}/heartbeat`, { method: 'POST', auth, json: body });
      const body = { logical_agent_id: 'edge-1', hostname: 'edge-1.example.com', version: '2.4.1' };
      const r1 = await reg(body);
      assert.equal(r1.status, 201, r1.text);
      assert.match(r1.json.id, UUID);
      assert.equal(r1.json.client_id, c.id);
      assert.equal(r1.json.status, 'online');
      const r2 = await reg({ ...body, version: '2.4.2' });
      assert.equal(r2.status, 201, r2.text);
      assert.equal(r2.json.id, r1.json.id, 'idempotent per client and logical_agent_id');
      assert.equal(r2.json.version, '2.4.2');
      const id = r1.json.id;
      const hb = await beat(id, { status: 'healthy' });
      assert.equal(hb.status, 200, hb.text);
      assert.deepEqual(hb.json, { success: true, message: 'Heartbeat received' });
      assert.equal((await beat(id, undefined)).status, 200, 'an empty body is fine');
      // whitespace around the token: accepted (the platform's 401 only for a refused token)
      assert.equal((await beat(id, {}, `Bearer ${tok.token} `)).status, 200);

      // another client's agent: 404; refused tokens: 401 with the reason
      const c2 = await newClient(t);
      const tok2 = await newToken(t, c2.id);
      const foreign = await beat(id, {}, `Bearer ${tok2.token}`);
      assert.equal(foreign.status, 404, foreign.text);
      assert.equal((await beat(NO_SUCH_ID, {})).status, 404);
      assert.equal((await beat('not-a-uuid', {})).status, 404);
      for (const [auth, reason] of [
        [null, 'missing'], // null: no Authorization header at all
        [`Bearer ${changeChar(tok.token, 7)}`, 'malformed'],
        [`Bearer ${t.token}`, 'kind_not_accepted'],
      ]) {
        for (const res of [await beat(id, {}, auth), await reg(body, auth)]) {
          assert.equal(res.status, 401, res.text);
          assert.equal(res.json.error, 'unauthenticated');
          assert.equal(res.json.reason, reason);
          assert.ok(res.headers['www-authenticate']);
        }
      }
      assert.equal((await request(t, `/v1/clients/${c.id}`, { method: 'PATCH', token: t.token, json: { status: 'suspended' } })).status, 200);
      const susp = await beat(id, {});
      assert.equal(susp.status, 401, susp.text);
      assert.equal(susp.json.reason, 'client_suspended');
      assert.match(susp.headers['www-authenticate'], /invalid_token/);
      assert.equal((await reg(body)).json.reason, 'client_suspended');
      assert.equal((await request(t, `/v1/clients/${c.id}`, { method: 'PATCH', token: t.token, json: { status: 'active' } })).status, 200);
      // failures are events of kind validate, action register / heartbeat
      const evs = await waitFor(
        async () => {
          const e = await allEvents(t, 'kind=validate&outcome=denied');
          return e.some((x) => x.action === 'heartbeat' && x.detail.reason === 'client_suspended') && e.some((x) => x.action === 'register') && e;
        },
        { timeoutMs: 10000, message: 'register and heartbeat failure events' },
      );
      assert.ok(evs.some((x) => x.action === 'heartbeat' && x.detail.reason === 'unknown_agent'));

      // hostile bodies
      for (const b of [
        {},
        { ...body, logical_agent_id: '' },
        { ...body, logical_agent_id: 'a b' },
        { ...body, hostname: 'x'.repeat(254) },
        { ...body, hostname: 'host/evil' },
        { ...body, version: 7 },
        { ...body, extra: 1 },
      ]) {
        const res = await reg(b);
        assert.equal(res.status, 400, `${JSON.stringify(b).slice(0, 80)}: ${res.text}`);
        assert.ok(res.json.field);
      }
      for (const b of [{ status: 'a b' }, { status: 5 }, { state: 'x' }, { status: 'x'.repeat(65) }]) {
        const res = await beat(id, b);
        assert.equal(res.status, 400, `${JSON.stringify(b)}: ${res.text}`);
      }
      // a bad body is a failure too: an event of its action
      await waitFor(async () => (await allEvents(t, 'kind=validate&outcome=denied')).some((x) => x.action === 'register' && x.detail.reason === 'invalid_body'), { timeoutMs: 10000, message: 'the invalid_body event' });

      // listed for operators; a viewer reads; a filter
      const list = await api(t, `/v1/agents?client_id=${c.id}`);
      assert.equal(list.status, 200, list.text);
      assert.deepEqual(list.json.agents.map((x) => x.id), [id]);
      // heartbeats are written in batches about every second
      await waitFor(async () => (await api(t, `/v1/agents?client_id=${c.id}`)).json.agents[0].reported_status === 'healthy', { timeoutMs: 10000, message: 'the reported status written' });
      assert.equal((await request(t, '/v1/agents', { token: viewer })).status, 200);
      assert.equal((await request(t, '/v1/agents', { token: other.token })).json.agents.length, 0, 'tenant scoped');
      for (const q of ['status=gone', 'client_id=nope', 'limit=0']) assert.equal((await api(t, `/v1/agents?${q}`)).status, 400, q);

      // no heartbeat for 2 s: stale, one event; a heartbeat: back, one event
      await waitFor(async () => (await api(t, `/v1/agents?client_id=${c.id}&status=stale`)).json.agents.length === 1, { timeoutMs: 15000, intervalMs: 200, message: 'the agent to go stale' });
      assert.equal((await beat(id, { status: 'healthy' })).status, 200);
      assert.equal((await api(t, `/v1/agents?client_id=${c.id}`)).json.agents[0].status, 'online');
      const ag = await allEvents(t, `kind=agent&subject=${id}`);
      assert.ok(ag.filter((x) => x.action === 'stale').length >= 1);
      assert.equal(ag.filter((x) => x.action === 'stale').length, ag.filter((x) => x.action === 'recovered').length, JSON.stringify(ag.map((x) => x.action)));
      const m = await scrape(t);
      assert.ok(metric(m, 'tokend_heartbeats_total', { outcome: 'ok' }) >= 3);
      assert.ok(metric(m, 'tokend_heartbeats_total', { outcome: 'denied' }) >= 3);
      assert.ok(metric(m, 'tokend_heartbeats_total', { outcome: 'not_found' }) >= 3);
      await waitFor(async () => metric(await scrape(t), 'tokend_agents', { status: 'online' }) >= 1, { timeoutMs: 5000, message: 'tokend_agents' });
    });

    it('heartbeats are noted in memory: 1000 cause a few store writes and reach the store in a batch', async () => {
      const c = await newClient(t);
      const tok = await newToken(t, c.id);
      const r = await request(t, '/v1/agents/register', { method: 'POST', token: tok.token, json: { logical_agent_id: 'burst-1', hostname: 'h', version: '1' } });
      assert.equal(r.status, 201, r.text);
      const id = r.json.id;
      const writes = (m) => metric(m, 'tokend_heartbeat_flushes_total', { kind: 'batch' }) + metric(m, 'tokend_heartbeat_flushes_total', { kind: 'direct' });
      const m0 = await scrape(t);
      const t0 = Date.now();
      for (let i = 0; i < 50; i++) {
        const rs = await Promise.all(Array.from({ length: 20 }, () => request(t, `/v1/agents/${id}/heartbeat`, { method: 'POST', token: tok.token, json: { status: `s${i}` } })));
        for (const x of rs) assert.equal(x.status, 200, x.text);
      }
      const secs = (Date.now() - t0) / 1000;
      // the last status reaches the store within a bounded wait (one flush)
      await waitFor(async () => (await api(t, `/v1/agents?client_id=${c.id}`)).json.agents[0]?.reported_status === 's49', { timeoutMs: 10000, intervalMs: 100, message: 'the burst written' });
      const m1 = await scrape(t);
      const n = writes(m1) - writes(m0);
      // one batch about every second while the burst ran (other tests' agents share them), no direct write
      assert.ok(n >= 1 && n <= Math.ceil(secs) + 3, `${n} store writes for 1000 heartbeats in ${secs} s`);
      assert.ok(metric(m1, 'tokend_heartbeat_flushes_total', { kind: 'direct' }) - metric(m0, 'tokend_heartbeat_flushes_total', { kind: 'direct' }) <= 1);
      assert.ok(metric(m1, 'tokend_heartbeats_total', { outcome: 'ok' }) - metric(m0, 'tokend_heartbeats_total', { outcome: 'ok' }) >= 1000);
      // another client's agent: still 404, and from the cache
      const c2 = await newClient(t);
      const tok2 = await newToken(t, c2.id);
      assert.equal((await request(t, `/v1/agents/${id}/heartbeat`, { method: 'POST', token: tok2.token, json: {} })).status, 404);
    });

    it("the report and tokend doctor name each cause of field report 004 in one sentence", async () => {
      const env = { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token };
      const op = await request(t, '/v1/operator-tokens', { method: 'POST', token: t.token, json: { name: 'ops', role: 'operator' } });
      assert.equal(op.status, 201, op.text);
      const c = await newClient(t, { name: `Acme Agents ${uniqueId('r')}` });
      const tok = await newToken(t, c.id);
      const report = async () => {
        const r = await api(t, `/v1/clients/${c.id}/report`);
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(Object.keys(r.json).sort(), ['agents', 'client', 'conclusion', 'failures', 'tokens', 'warnings']);
        assert.ok(!r.text.includes(tok.token));
        return r.json;
      };
      // healthy
      assert.equal((await self(t, `Bearer ${tok.token}`)).valid, true);
      assert.match((await report()).conclusion, /is active with 1 usable token/);
      const ok = await runCli(['doctor', 'client', c.id], { env });
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /is active/);
      // the token with a trailing newline: accepted, and said so
      assert.equal((await self(t, `Bearer "${tok.token}"`)).valid, true);
      const w = await waitFor(async () => {
        const r = await report();
        return r.warnings.length > 0 && r;
      }, { timeoutMs: 10000, message: 'the warning in the report' });
      assert.match(w.conclusion, /sends the token in quotes: strip it \(validated with a warning since \d\d:\d\d:\d\d/);
      // a damaged token: malformed failures, counted
      for (let i = 0; i < 3; i++) await self(t, `Bearer ${changeChar(tok.token, 11)}`);
      // (a malformed token names no client: the failures of a known token count)
      const tok2 = await newToken(t, c.id);
      assert.equal((await api(t, `/v1/clients/${c.id}/tokens/${tok2.id}`, { method: 'DELETE' })).status, 200);
      await self(t, `Bearer ${tok2.token}`);
      const f = await waitFor(async () => {
        const r = await report();
        return r.failures.by_reason.revoked >= 1 && r;
      }, { timeoutMs: 10000, message: 'the revoked failure in the report' });
      assert.match(f.conclusion, /failure\(s\) of client .* most of them revoked/);
      // disabled by operator 'ops'
      assert.equal((await request(t, `/v1/clients/${c.id}`, { method: 'PATCH', token: op.json.token, json: { status: 'disabled' } })).status, 200);
      const d = await report();
      assert.match(d.conclusion, new RegExp(`client '${c.name}' was disabled at \\d\\d:\\d\\d:\\d\\d by operator 'ops': every token of it fails with client_inactive`));
      const dc = await runCli(['doctor', 'client', c.id], { env });
      assert.equal(dc.code, 1);
      assert.match(dc.stdout, /by operator 'ops'/);
      assert.match(dc.stdout, /tkc_/);
      // no usable token
      assert.equal((await request(t, `/v1/clients/${c.id}`, { method: 'PATCH', token: t.token, json: { status: 'active' } })).status, 200);
      assert.equal((await api(t, `/v1/clients/${c.id}/tokens/${tok.id}`, { method: 'DELETE' })).status, 200);
      assert.match((await report()).conclusion, /has no usable token \(2 revoked, 0 expired\)/);
      assert.equal((await api(t, `/v1/clients/${NO_SUCH_ID}/report`)).status, 404);
      assert.equal((await request(t, `/v1/clients/${c.id}/report`, { token: other.token })).status, 404);

      // tokend doctor token: from stdin, never an argument
      const t3 = await newToken(t, c.id);
      const good = await cliWithStdin(['doctor', 'token'], `${t3.token}\n`, env);
      assert.equal(good.code, 0, good.stderr);
      assert.match(good.stdout, /^valid: client/);
      const crlf = await cliWithStdin(['doctor', 'token'], `${t3.token}\r\n`, env);
      assert.equal(crlf.code, 0, crlf.stderr);
      assert.match(crlf.stdout, /warning: trailing_crlf/);
      const gone = await cliWithStdin(['doctor', 'token', '--json'], tok.token, env);
      assert.equal(gone.code, 1);
      assert.equal(JSON.parse(gone.stdout).reason, 'revoked');
      const arg = await runCli(['doctor', 'token', t3.token], { env });
      assert.equal(arg.code, 2);
      assert.ok(!arg.stderr.includes(t3.token));
    });

    it('sealed: both validate routes answer 503 sealed, never 401', async () => {
      const c = await newClient(t);
      const tok = await newToken(t, c.id);
      assert.equal((await self(t, `Bearer ${tok.token}`)).valid, true);
      const s = await api(t, '/v1/sys/seal', { method: 'POST' });
      assert.equal(s.status, 200, s.text);
      for (const auth of [`Bearer ${tok.token}`, `Bearer ${changeChar(tok.token, 9)}`, undefined]) {
        const r = await request(t, '/v1/tokens/validate', { auth });
        assert.equal(r.status, 503, r.text);
        assert.equal(r.json.error, 'sealed');
        assert.ok(r.headers['retry-after']);
      }
      const p = await request(t, '/v1/tokens/validate', { method: 'POST', token: t.token, json: { token: tok.token } });
      assert.equal(p.status, 503, p.text);
      assert.equal(p.json.error, 'sealed');
    });
  });
}

/** Two nodes sharing one store: A and B (B's store URL may differ). */
const AGENT_ARGS = ['--agent-heartbeat-interval', '1', '--agent-stale-after', '1'];
async function twoNodes(tc, backend) {
  if (backend === 'postgres') {
    const store = await createPgDatabase();
    const a = await startTokend({ backend, store, args: ['--node-name', 'node-a', ...AGENT_ARGS] });
    tc.after(() => a.stop('SIGKILL').catch(() => {}));
    const dir = await freshDir('node-b');
    await copyFile(path.join(a.dataDir, 'unseal.key'), path.join(dir, 'unseal.key'));
    const b = await startTokend({ backend, store, dataDir: dir, args: ['--node-name', 'node-b', ...AGENT_ARGS], allowNoRootToken: true });
    tc.after(() => b.stop('SIGKILL').catch(() => {}));
    b.token = a.token;
    return { a, b };
  }
  const a = await startTokend({ backend: 'sqlite', args: ['--node-name', 'node-a', ...AGENT_ARGS] });
  tc.after(() => a.stop('SIGKILL').catch(() => {}));
  const dir = await freshDir('node-b');
  await copyFile(path.join(a.dataDir, 'unseal.key'), path.join(dir, 'unseal.key'));
  const b = await startTokend({ backend: 'sqlite', store: `sqlite:${path.join(a.dataDir, 'tokend.db')}`, dataDir: dir, args: ['--node-name', 'node-b', ...AGENT_ARGS], allowNoRootToken: true });
  tc.after(() => b.stop('SIGKILL').catch(() => {}));
  b.token = a.token;
  return { a, b };
}

for (const backend of ['postgres', 'sqlite']) {
  const skip = backend === 'postgres' && !hasPg ? 'needs TOKEND_TEST_PG (tests/with-postgres.sh)' : false;
  describe(`client tokens on two nodes (${backend})`, { timeout: SUITE_TIMEOUT_MS, skip }, () => {
    it('a suspension, a revoke and a rotation on node A refuse on node B within one second; an agent goes stale once', async (tc) => {
      const { a, b } = await twoNodes(tc, backend);
      const c = await newClient(a);
      const tok = await newToken(a, c.id);
      const tok2 = await newToken(a, c.id);
      for (let i = 0; i < 3; i++) {
        assert.equal((await self(b, `Bearer ${tok.token}`)).valid, true); // cached on B
        assert.equal((await self(b, `Bearer ${tok2.token}`)).valid, true);
      }
      const within = (token, reason, message) =>
        waitFor(async () => (await self(b, `Bearer ${token}`)).reason === reason, { timeoutMs: 1000, intervalMs: 25, message });
      assert.equal((await request(a, `/v1/clients/${c.id}`, { method: 'PATCH', token: a.token, json: { status: 'suspended' } })).status, 200);
      await within(tok.token, 'client_suspended', 'node B to refuse the suspended client');
      assert.equal((await request(a, `/v1/clients/${c.id}`, { method: 'PATCH', token: a.token, json: { status: 'disabled' } })).status, 200);
      await within(tok.token, 'client_inactive', 'node B to see the disabled client');
      assert.equal((await request(a, `/v1/clients/${c.id}`, { method: 'PATCH', token: a.token, json: { status: 'active' } })).status, 200);
      await waitFor(async () => (await self(b, `Bearer ${tok.token}`)).valid === true, { timeoutMs: 1000, intervalMs: 25, message: 'node B to accept it again' });
      assert.equal((await api(a, `/v1/clients/${c.id}/tokens/${tok2.id}`, { method: 'DELETE' })).status, 200);
      await within(tok2.token, 'revoked', 'node B to refuse the revoked token');
      const rot = await request(a, `/v1/clients/${c.id}/tokens/${tok.id}/rotate`, { method: 'POST', token: a.token, json: { grace: 0 } });
      assert.equal(rot.status, 201, rot.text);
      await within(tok.token, 'revoked', 'node B to refuse the rotated token');
      assert.equal((await self(b, `Bearer ${rot.json.token}`)).valid, true);

      // an agent registered on A goes stale once, though both nodes sweep
      const agent = async (node, token) => {
        const r = await request(node, '/v1/agents/register', { method: 'POST', token, json: { logical_agent_id: 'a1', hostname: 'h1', version: '1' } });
        assert.equal(r.status, 201, r.text);
        return r.json.id;
      };
      const id = await agent(a, rot.json.token);
      await waitFor(async () => (await allEvents(a, `kind=agent&subject=${id}`)).some((x) => x.action === 'stale'), { timeoutMs: 15000, intervalMs: 100, message: 'the stale event' });
      await new Promise((res) => setTimeout(res, 1500)); // more sweeps on both nodes
      const evs = await allEvents(b, `kind=agent&subject=${id}`);
      assert.equal(evs.filter((x) => x.action === 'stale').length, 1, JSON.stringify(evs.map((x) => [x.action, x.node])));
      const hb = await request(b, `/v1/agents/${id}/heartbeat`, { method: 'POST', token: rot.json.token, json: { status: 'ok' } });
      assert.equal(hb.status, 200, hb.text);
      const back = await allEvents(a, `kind=agent&subject=${id}&action=recovered`);
      assert.equal(back.length, 1);
      // heartbeats on both nodes (noted in memory, written in batches): it stays online, no new event
      const until = Date.now() + 3500;
      while (Date.now() < until) {
        for (const n of [a, b]) {
          const x = await request(n, `/v1/agents/${id}/heartbeat`, { method: 'POST', token: rot.json.token, json: { status: 'ok' } });
          assert.equal(x.status, 200, x.text);
        }
        await new Promise((res) => setTimeout(res, 150));
      }
      const evs2 = await allEvents(a, `kind=agent&subject=${id}`);
      assert.deepEqual(evs2.map((x) => x.action).sort(), ['recovered', 'stale'], JSON.stringify(evs2.map((x) => [x.action, x.node])));
      assert.equal((await api(a, `/v1/agents?client_id=${c.id}`)).json.agents[0].status, 'online');
      await Promise.all([stopAndScan(b), stopAndScan(a)]);
    });
  });
}

for (const backend of backends()) {
  describe(`heartbeats at shutdown (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    it('SIGTERM writes the heartbeats noted in memory', async () => {
      const n = await startTokend({ backend });
      try {
        const c = await newClient(n);
        const tok = await newToken(n, c.id);
        const r = await request(n, '/v1/agents/register', { method: 'POST', token: tok.token, json: { logical_agent_id: 'bye-1', hostname: 'h', version: '1' } });
        assert.equal(r.status, 201, r.text);
        const hb = await request(n, `/v1/agents/${r.json.id}/heartbeat`, { method: 'POST', token: tok.token, json: { status: 'last-words' } });
        assert.equal(hb.status, 200, hb.text);
        // noted in memory, not written at once
        assert.equal(metric(await scrape(n), 'tokend_heartbeat_flushes_total', { kind: 'direct' }), 0);
        const res = await n.stop('SIGTERM');
        assert.equal(res.code, 0, JSON.stringify(res));
        const st = (await storeSql(n, `SELECT reported_status FROM agents WHERE id = '${r.json.id}'`)).trim();
        assert.equal(st, 'last-words');
      } finally {
        await stopAndScan(n);
      }
    });
  });
}
