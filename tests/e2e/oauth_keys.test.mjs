// oauth_keys.test.mjs: the authorization server's signing keys (issue 15
// item 1): GET /oauth2/jwks (public, cacheable, answers while sealed; every
// key imports into node:crypto and its kid is its RFC 7638 thumbprint),
// GET /v1/sys/signing-keys and POST /v1/sys/signing-keys/rotate (node admin:
// a new key is in the JWKS before it signs, the old one stays published
// after it stops signing), events, and on PostgreSQL two nodes: a key
// rotated on node A is in node B's JWKS within a couple of seconds, and a
// scheduled rotation is done by one node only.
//
// Tokens signed by tokend are checked against node:crypto in the unit tests
// (tests/unit/test_oauth_keys.c: tokens made by node:crypto verify in
// tokend, and tokend's sign/verify round trip) until the token endpoint
// issues them over HTTP.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { allEvents, api, backends, createPgDatabase, createTenant, freshDir, request, runCli, startTokend, stopAndScan, storeSql, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const ARGS = ['--oauth-signing-publish-ahead', '2', '--oauth-access-token-ttl', '60'];

function thumbprint(jwk) {
  const members = jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : jwk.kty === 'RSA' ? { e: jwk.e, kty: jwk.kty, n: jwk.n } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x };
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

function checkJwk(jwk) {
  for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(jwk[m], undefined, `no private member ${m}`);
  assert.equal(jwk.use, 'sig');
  assert.equal(jwk.kid, thumbprint(jwk), 'kid is the RFC 7638 thumbprint');
  const k = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  assert.equal(k.type, 'public');
  if (jwk.alg === 'ES256') {
    assert.equal(jwk.kty, 'EC');
    assert.equal(jwk.crv, 'P-256');
    assert.equal(k.asymmetricKeyDetails.namedCurve, 'prime256v1');
  } else if (jwk.alg === 'RS256') {
    assert.equal(k.asymmetricKeyDetails.modulusLength, 2048);
  } else {
    assert.equal(jwk.alg, 'EdDSA');
    assert.equal(k.asymmetricKeyType, 'ed25519');
  }
}

async function jwks(t) {
  const r = await request(t, '/oauth2/jwks');
  assert.equal(r.status, 200, r.text);
  return r;
}

for (const backend of backends()) {
  describe(`signing keys (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend, args: ARGS });
    });
    after(async () => {
      await stopAndScan(t);
    });

    it('GET /oauth2/jwks: the first key, public, cacheable, importable', async () => {
      const r = await jwks(t);
      assert.match(r.headers['cache-control'], /^public, max-age=1$/);
      assert.match(r.headers['content-type'], /application\/json/);
      assert.equal(r.json.keys.length, 1);
      const [k] = r.json.keys;
      assert.equal(k.alg, 'ES256');
      checkJwk(k);
      const l = await api(t, '/v1/sys/signing-keys');
      assert.equal(l.status, 200, l.text);
      assert.equal(l.json.signing_keys.length, 1);
      const row = l.json.signing_keys[0];
      assert.equal(row.kid, k.kid);
      assert.equal(row.status, 'active');
      assert.equal(row.generation, 1);
      assert.equal(row.retired_at, null);
      assert.deepEqual(row.public_jwk, k);
      assert.ok(!('private_key' in row));
      // the stored private key is sealed
      const stored = await storeSql(t, `SELECT private_key FROM oauth_signing_keys WHERE id = '${row.id}'`);
      assert.match(stored, /ENC:v1:/);
      assert.ok(!/"d"/.test(await storeSql(t, 'SELECT public_jwk FROM oauth_signing_keys')));
    });

    it('rotate: the new key is published before it signs; the old one stays published', async () => {
      const before0 = (await jwks(t)).json.keys;
      const r = await api(t, '/v1/sys/signing-keys/rotate', { method: 'POST' });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.json.status, 'pending');
      assert.equal(r.json.alg, 'ES256');
      assert.equal(r.json.generation, 2);
      const ahead = Date.parse(r.json.active_at) - Date.parse(r.json.created_at);
      assert.equal(ahead, 2000, 'active_at = created_at + oauth_signing_publish_ahead');
      checkJwk(r.json.public_jwk);
      // in this node's JWKS at once (the rotation kicks the key worker)
      await waitFor(async () => (await jwks(t)).json.keys.some((k) => k.kid === r.json.kid), { timeoutMs: 5000, message: 'new key in the JWKS' });
      const now = await api(t, '/v1/sys/signing-keys');
      const [nk, old] = now.json.signing_keys;
      assert.equal(nk.kid, r.json.kid);
      assert.equal(old.kid, before0[0].kid);
      assert.equal(old.retired_at, nk.active_at, 'the old key stops signing when the new one starts');
      // unpublished after its last token's expiry: retired + ttl (60 s) + 60 s of skew
      assert.equal(Date.parse(old.unpublish_at) - Date.parse(old.retired_at), 120000);
      // once active, the new key signs and the old is retired but still published
      await waitFor(async () => (await api(t, '/v1/sys/signing-keys')).json.signing_keys[0].status === 'active', { timeoutMs: 10000, message: 'new key active' });
      const later = await api(t, '/v1/sys/signing-keys');
      assert.equal(later.json.signing_keys[1].status, 'retired');
      const kids = (await jwks(t)).json.keys.map((k) => k.kid);
      assert.ok(kids.includes(old.kid) && kids.includes(nk.kid), 'both keys in the JWKS');
      // the event
      const evs = await allEvents(t, 'kind=oauth');
      const ev = evs.find((e) => e.action === 'signing_key_rotate' && e.subject_id === nk.id);
      assert.ok(ev, 'a signing_key_rotate event');
      assert.equal(ev.outcome, 'ok');
      assert.equal(ev.subject_type, 'signing_key');
      assert.equal(ev.detail.kid, nk.kid);
      assert.equal(ev.detail.reason, 'manual');
      assert.ok(evs.some((e) => e.action === 'signing_key_rotate' && e.detail.reason === 'initial'), 'the first key has its event');
    });

    it('rotate {"immediate": true} signs at once; a retired key leaves the JWKS at unpublish_at', async () => {
      const r = await api(t, '/v1/sys/signing-keys/rotate', { method: 'POST', json: { immediate: true } });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.json.status, 'active');
      assert.equal(r.json.active_at, r.json.created_at);
      // make the oldest key's last token expire now: it leaves the JWKS
      const l = (await api(t, '/v1/sys/signing-keys')).json.signing_keys;
      const oldest = l[l.length - 1];
      await storeSql(t, `UPDATE oauth_signing_keys SET unpublish_at = ${Date.now() - 1000} WHERE id = '${oldest.id}'`);
      await waitFor(async () => !(await jwks(t)).json.keys.some((k) => k.kid === oldest.kid), { timeoutMs: 10000, message: 'unpublished key leaves the JWKS' });
      const after1 = (await api(t, '/v1/sys/signing-keys')).json.signing_keys;
      assert.equal(after1.find((k) => k.id === oldest.id).status, 'unpublished');
      // the next rotation deletes its row
      assert.equal((await api(t, '/v1/sys/signing-keys/rotate', { method: 'POST', json: {} })).status, 201);
      assert.ok(!(await api(t, '/v1/sys/signing-keys')).json.signing_keys.some((k) => k.id === oldest.id));
    });

    it('hostile bodies and callers are refused', async () => {
      for (const [json, field] of [
        [{ immediate: 'yes' }, 'immediate'],
        [{ immediate: 1 }, 'immediate'],
        [{ alg: 'HS256' }, 'alg'],
      ]) {
        const r = await api(t, '/v1/sys/signing-keys/rotate', { method: 'POST', json });
        assert.equal(r.status, 400, r.text);
        assert.equal(r.json.field, field);
      }
      // paging: limit and cursor
      const all = (await api(t, '/v1/sys/signing-keys')).json.signing_keys;
      assert.ok(all.length >= 2);
      const p1 = await api(t, '/v1/sys/signing-keys?limit=1');
      assert.equal(p1.json.signing_keys.length, 1);
      assert.equal(p1.json.next_cursor, all[0].id);
      const p2 = await api(t, `/v1/sys/signing-keys?limit=1&cursor=${p1.json.next_cursor}`);
      assert.equal(p2.json.signing_keys[0].id, all[1].id);
      assert.equal((await api(t, '/v1/sys/signing-keys?limit=0')).status, 400);
      assert.equal((await api(t, '/v1/sys/signing-keys?cursor=nope')).status, 400);
      const bad = await api(t, '/v1/sys/signing-keys/rotate', { method: 'POST', body: '[', headers: { 'content-type': 'application/json' } });
      assert.equal(bad.status, 400, bad.text);
      const other = await createTenant(t);
      for (const [method, p] of [['GET', '/v1/sys/signing-keys'], ['POST', '/v1/sys/signing-keys/rotate']]) {
        const r = await request(t, p, { method, token: other.token, json: method === 'POST' ? {} : undefined });
        assert.equal(r.status, 403, r.text);
        const n = await request(t, p, { method, json: method === 'POST' ? {} : undefined });
        assert.equal(n.status, 401, n.text);
      }
      const routes = (await api(t, '/v1/sys/routes')).json.routes;
      const jw = routes.find((x) => x.path === '/oauth2/jwks');
      assert.equal(jw.role, 'public');
      assert.equal(jw.sealed_ok, true);
    });

    it('metrics: keys by status and JWTs signed by alg', async () => {
      const m = await request(t, '/metrics');
      assert.match(m.text, /^tokend_oauth_signing_keys\{status="active"\} 1$/m);
      assert.match(m.text, /^tokend_oauth_jwt_signed_total\{alg="ES256"\} \d+$/m);
    });

    it('tokend signing-keys list|rotate', async () => {
      const env = { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token };
      const r = await runCli(['signing-keys', 'rotate', '--immediate', '--json'], { env });
      assert.equal(r.code, 0, r.stderr);
      const made = JSON.parse(r.stdout);
      assert.equal(made.status, 'active');
      const l = await runCli(['signing-keys', 'list'], { env });
      assert.equal(l.code, 0, l.stderr);
      assert.match(l.stdout, /^ALG\s+STATUS\s+KID/m);
      assert.match(l.stdout, new RegExp(`^ES256\\s+active\\s+${made.kid.replace(/[-]/g, '\\-')}`, 'm'));
      const j = await runCli(['signing-keys', 'list', '--json'], { env });
      assert.equal(JSON.parse(j.stdout).signing_keys[0].kid, made.kid);
      assert.equal((await runCli(['signing-keys', 'nope'], { env })).code, 2);
      assert.equal((await runCli(['signing-keys', 'rotate', '--later'], { env })).code, 2);
      const h = await runCli(['help', 'signing-keys']);
      assert.equal(h.code, 0);
      assert.match(h.stdout, /^usage: tokend signing-keys list/);
    });

    it('sealed: the JWKS still answers, rotation is refused', async () => {
      const keys = (await jwks(t)).json.keys;
      const s = await api(t, '/v1/sys/seal', { method: 'POST' });
      assert.equal(s.status, 200, s.text);
      const r = await jwks(t);
      assert.deepEqual(r.json.keys.map((k) => k.kid).sort(), keys.map((k) => k.kid).sort());
      const rot = await api(t, '/v1/sys/signing-keys/rotate', { method: 'POST' });
      assert.equal(rot.status, 503, rot.text);
      assert.equal(rot.json.error, 'sealed');
    });
  });
}

describe('signing keys: RS256 and EdDSA by oauth_signing_alg (sqlite)', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('the first key and the next rotation follow the setting', async () => {
    for (const alg of ['RS256', 'EdDSA']) {
      const t = await startTokend({ backend: 'sqlite', args: ['--oauth-signing-alg', alg] });
      try {
        const r = await jwks(t);
        assert.equal(r.json.keys.length, 1);
        assert.equal(r.json.keys[0].alg, alg);
        checkJwk(r.json.keys[0]);
        const rot = await api(t, '/v1/sys/signing-keys/rotate', { method: 'POST', json: { immediate: true } });
        assert.equal(rot.status, 201, rot.text);
        assert.equal(rot.json.alg, alg);
      } finally {
        await stopAndScan(t);
      }
    }
  });
});

const hasPg = backends().includes('postgres');

describe('signing keys on two nodes (postgres)', { timeout: SUITE_TIMEOUT_MS, skip: hasPg ? false : 'needs TOKEND_TEST_PG (tests/with-postgres.sh)' }, () => {
  let a;
  let b;
  before(async () => {
    const store = await createPgDatabase();
    // both nodes rotate on a 3 s schedule: one of them does it each time
    const sched = [...ARGS, '--oauth-signing-rotate-every', '3'];
    a = await startTokend({ backend: 'postgres', store, args: ['--node-name', 'node-a', ...sched] });
    const dir = await freshDir('node-b');
    await copyFile(path.join(a.dataDir, 'unseal.key'), path.join(dir, 'unseal.key'));
    b = await startTokend({ backend: 'postgres', store, dataDir: dir, args: ['--node-name', 'node-b', ...sched], allowNoRootToken: true });
    b.token = a.token;
  });
  after(async () => {
    await Promise.all([stopAndScan(a), stopAndScan(b)]);
  });

  it("a key rotated on node A is in node B's JWKS within a couple of seconds", async () => {
    const r = await api(a, '/v1/sys/signing-keys/rotate', { method: 'POST' });
    assert.equal(r.status, 201, r.text);
    const t0 = Date.now();
    await waitFor(async () => (await jwks(b)).json.keys.some((k) => k.kid === r.json.kid), { timeoutMs: 10000, intervalMs: 50, message: "node B's JWKS has node A's new key" });
    const ms = Date.now() - t0;
    assert.ok(ms < 5000, `node B published it after ${ms} ms`);
    // published on B before it signs (publish-ahead 2 s, B polls every second)
    assert.ok(Date.now() < Date.parse(r.json.active_at) + 3000);
  });

  it('scheduled rotation: one node rotates each time, never both', async () => {
    await waitFor(async () => (await api(a, '/v1/sys/signing-keys')).json.signing_keys[0].generation >= 5, { timeoutMs: 30000, intervalMs: 200, message: 'three scheduled rotations' });
    const keys = (await api(a, '/v1/sys/signing-keys')).json.signing_keys;
    const gens = keys.map((k) => k.generation);
    assert.equal(new Set(gens).size, gens.length, 'generations are unique');
    const evs = (await allEvents(a, 'kind=oauth')).filter((e) => e.action === 'signing_key_rotate' && e.detail.reason === 'scheduled');
    assert.ok(evs.length >= 2, 'scheduled rotation events');
    // each scheduled key came rotate_every (3 s) after the key before it:
    // two nodes never both rotated for one period
    const byGen = [...keys].sort((x, y) => x.generation - y.generation);
    for (const ev of evs) {
      const i = byGen.findIndex((k) => k.id === ev.subject_id);
      if (i <= 0) continue;
      const gap = Date.parse(byGen[i].created_at) - Date.parse(byGen[i - 1].created_at);
      assert.ok(gap >= 2900, `key ${byGen[i].generation} was made ${gap} ms after the one before`);
    }
    assert.ok(new Set(evs.map((e) => e.node)).size >= 1);
  });
});
