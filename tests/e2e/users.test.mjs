// users.test.mjs: a tenant's end users (issue 15 item 3, the user side):
// /v1/users CRUD (email rules, 409 per tenant, another tenant's is 404, a
// viewer reads but cannot write, never a hash or password in an answer or
// event), the tokend users CLI with the password on stdin, and the hash
// pool's bound: many concurrent hashes answer 503 hash_busy at once past
// users_hash_queue while /health keeps answering. Ends with the secret
// scan, every password noted.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { noteSecret } from './lib/secrets.mjs';
import {
  allEvents,
  api,
  backends,
  BIN,
  createTenant,
  metric,
  request,
  scrape,
  startTokend,
  stopAndScan,
  uniqueId,
  SUITE_TIMEOUT_MS,
} from './lib/tokend.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const FAST = ['--users-argon2-memory-kib', '1024', '--users-argon2-iterations', '1'];

export function password() {
  const p = `pw-${crypto.randomBytes(18).toString('base64url')}`;
  noteSecret(p, { kind: 'password' });
  return p;
}

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

for (const backend of backends()) {
  describe(`end users (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let viewer;
    const pws = [];
    before(async () => {
      t = await startTokend({ backend, args: FAST });
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'v', role: 'viewer' } });
      assert.equal(v.status, 201, v.text);
      viewer = v.json.token;
    });
    after(async () => {
      if (t) await stopAndScan(t);
    });

    it('creates a user: email lowercased, 201 without any hash or password', async () => {
      const pw = password();
      pws.push(pw);
      const r = await api(t, '/v1/users', { method: 'POST', json: { email: 'Ada.Lovelace@Example.COM', password: pw } });
      assert.equal(r.status, 201, r.text);
      assert.match(r.json.id, UUID);
      assert.equal(r.json.email, 'ada.lovelace@example.com');
      assert.equal(r.json.status, 'active');
      assert.equal(r.json.last_login_at, null);
      assert.deepEqual(Object.keys(r.json).sort(), ['created_at', 'email', 'id', 'last_login_at', 'status', 'updated_at']);
      assert.ok(!r.text.includes(pw) && !r.text.includes('argon2'), r.text);
      const g = await api(t, `/v1/users/${r.json.id}`);
      assert.equal(g.status, 200);
      assert.deepEqual(g.json, r.json);
      // unique per tenant, whatever the case
      const dup = await api(t, '/v1/users', { method: 'POST', json: { email: 'ADA.lovelace@example.com', password: password() } });
      assert.equal(dup.status, 409, dup.text);
      assert.equal(dup.json.error, 'email_taken');
      assert.equal(dup.json.field, 'email');
      // the stored hash is argon2id with the settings' parameters
      const ev = await allEvents(t, 'kind=user');
      const created = ev.find((e) => e.action === 'create' && e.subject_id === r.json.id);
      assert.ok(created, 'a user create event');
      assert.equal(created.subject_type, 'user');
      assert.ok(!JSON.stringify(ev).includes(pw));
    });

    it('refuses bad emails and passwords naming the field, never echoing the password', async () => {
      const cases = [
        [{ email: ' a@example.com', password: 'longenough1' }, 'email'],
        [{ email: 'a@example.com ', password: 'longenough1' }, 'email'],
        [{ email: 'a b@example.com', password: 'longenough1' }, 'email'],
        [{ email: 'no-at-sign', password: 'longenough1' }, 'email'],
        [{ email: 'a@b@c', password: 'longenough1' }, 'email'],
        [{ email: '@example.com', password: 'longenough1' }, 'email'],
        [{ email: `${'x'.repeat(250)}@example.com`, password: 'longenough1' }, 'email'],
        [{ email: 'a\u0000@example.com', password: 'longenough1' }, null], // the JSON parser refuses U+0000
        [{ email: 'a<script>@example.com', password: 'longenough1' }, 'email'],
        [{ email: 7, password: 'longenough1' }, 'email'],
        [{ password: 'longenough1' }, 'email'],
        [{ email: 'short@example.com', password: 'short7!' }, 'password'],
        [{ email: 'long@example.com', password: 'p'.repeat(1025) }, 'password'],
        [{ email: 'nul@example.com', password: 'abcdefgh\u0000ij' }, null],
        [{ email: 'num@example.com', password: 12345678 }, 'password'],
        [{ email: 'none@example.com' }, 'password'],
        [{ email: 'x@example.com', password: 'longenough1', role: 'admin' }, 'role'],
      ];
      for (const [body, field] of cases) {
        const r = await api(t, '/v1/users', { method: 'POST', json: body });
        assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)}: ${r.text}`);
        if (field) assert.equal(r.json.field, field, r.text);
        if (typeof body.password === 'string' && body.password.length > 3) assert.ok(!r.text.includes(body.password), r.text);
      }
      // 1024 bytes is the most; 8 the least (bytes, not characters)
      const max = await api(t, '/v1/users', { method: 'POST', json: { email: 'max@example.com', password: 'é'.repeat(512) } });
      assert.equal(max.status, 201, max.text);
      const min = await api(t, '/v1/users', { method: 'POST', json: { email: 'min@example.com', password: 'ééé' } });
      assert.equal(min.status, 400, min.text);
    });

    it('lists, pages, filters, disables and re-enables; a viewer reads but cannot write; another tenant sees 404', async () => {
      const ids = [];
      for (let i = 0; i < 3; i++) {
        const r = await api(t, '/v1/users', { method: 'POST', json: { email: `${uniqueId('list')}@example.com`.toLowerCase(), password: password() } });
        assert.equal(r.status, 201, r.text);
        ids.push(r.json.id);
      }
      const p1 = await api(t, '/v1/users?limit=2');
      assert.equal(p1.status, 200, p1.text);
      assert.equal(p1.json.users.length, 2);
      assert.equal(p1.json.users[0].id, ids[2], 'newest first');
      const p2 = await api(t, `/v1/users?limit=2&cursor=${p1.json.next_cursor}`);
      assert.equal(p2.json.users[0].id, ids[0]);
      const dis = await api(t, `/v1/users/${ids[0]}`, { method: 'PATCH', json: { status: 'disabled' } });
      assert.equal(dis.status, 200, dis.text);
      assert.equal(dis.json.status, 'disabled');
      const only = await api(t, '/v1/users?status=disabled');
      assert.deepEqual(only.json.users.map((u) => u.id), [ids[0]]);
      assert.equal((await api(t, '/v1/users?status=gone')).status, 400);
      assert.equal((await api(t, `/v1/users/${ids[0]}`, { method: 'PATCH', json: { status: 'deleted' } })).status, 400);
      const en = await api(t, `/v1/users/${ids[0]}`, { method: 'PATCH', json: { status: 'active' } });
      assert.equal(en.json.status, 'active');
      const pw = password();
      const setpw = await api(t, `/v1/users/${ids[1]}`, { method: 'PATCH', json: { password: pw } });
      assert.equal(setpw.status, 200, setpw.text);
      assert.ok(!setpw.text.includes(pw));
      // viewer
      assert.equal((await request(t, '/v1/users', { token: viewer })).status, 200);
      const vw = await request(t, '/v1/users', { method: 'POST', token: viewer, json: { email: 'v@example.com', password: password() } });
      assert.equal(vw.status, 403, vw.text);
      // another tenant
      const other = await createTenant(t);
      assert.equal((await request(t, `/v1/users/${ids[0]}`, { token: other.token })).status, 404);
      assert.equal((await request(t, `/v1/users/${ids[0]}`, { method: 'PATCH', token: other.token, json: { status: 'disabled' } })).status, 404);
      const same = await request(t, '/v1/users', { method: 'POST', token: other.token, json: { email: 'ada.lovelace@example.com', password: password() } });
      assert.equal(same.status, 201, `the same email in another tenant: ${same.text}`);
      assert.equal((await api(t, '/v1/users/not-a-uuid')).status, 404);
      assert.equal((await api(t, '/v1/users/0190a000-0000-7000-8000-000000000099')).status, 404);
    });

    it('tokend users: create with the password on stdin, list, show, disable, enable, set-password', async () => {
      const env = { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token };
      const pw = password();
      const c = await cliWithStdin(['users', 'create', 'Cli.User@example.com', '--json'], `${pw}\n`, env);
      assert.equal(c.code, 0, c.stderr);
      const u = JSON.parse(c.stdout);
      assert.equal(u.email, 'cli.user@example.com');
      assert.ok(!c.stdout.includes(pw) && !c.stderr.includes(pw));
      const none = await cliWithStdin(['users', 'create', 'empty@example.com'], '', env);
      assert.equal(none.code, 2, none.stderr);
      const short = await cliWithStdin(['users', 'create', 'short@example.com'], 'short\n', env);
      assert.equal(short.code, 1, short.stderr);
      assert.match(short.stderr, /password/);
      const l = await cliWithStdin(['users', 'list'], '', env);
      assert.equal(l.code, 0, l.stderr);
      assert.match(l.stdout, /cli\.user@example\.com/);
      const s = await cliWithStdin(['users', 'show', u.id], '', env);
      assert.equal(s.code, 0, s.stderr);
      assert.match(s.stdout, /status\s+active/);
      const d = await cliWithStdin(['users', 'disable', u.id], '', env);
      assert.equal(d.code, 0, d.stderr);
      assert.match(d.stdout, /status\s+disabled/);
      const e = await cliWithStdin(['users', 'enable', u.id], '', env);
      assert.match(e.stdout, /status\s+active/);
      const pw2 = password();
      const sp = await cliWithStdin(['users', 'set-password', u.id], `${pw2}\r\n`, env);
      assert.equal(sp.code, 0, sp.stderr);
      const ev = await allEvents(t, 'kind=user');
      assert.ok(ev.some((x) => x.action === 'update' && x.subject_id === u.id && x.detail.password_changed === true));
      const bad = await cliWithStdin(['users', 'frobnicate'], '', env);
      assert.equal(bad.code, 2);
      const help = await cliWithStdin(['help', 'users'], '', env);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /set-password/);
    });

    it('counts hashes in tokend_users_password_hashes_total', async () => {
      const m = await scrape(t);
      assert.ok(metric(m, 'tokend_users_password_hashes_total', { outcome: 'hashed' }) >= 5);
      assert.equal(metric(m, 'tokend_users_hash_queue', { state: 'waiting' }), 0);
    });
  });

  describe(`the hash pool's bound (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      // slow hashes (64 MiB, 4 passes), one thread, one waiting
      t = await startTokend({
        backend,
        args: ['--users-argon2-memory-kib', '65536', '--users-argon2-iterations', '4', '--users-hash-concurrency', '1', '--users-hash-queue', '1'],
      });
    });
    after(async () => {
      if (t) await stopAndScan(t);
    });

    it('answers 503 hash_busy at once past the queue, and /health while hashes run', async () => {
      const n = 8;
      const started = Date.now();
      const results = [];
      const reqs = [];
      for (let i = 0; i < n; i++)
        reqs.push(
          api(t, '/v1/users', { method: 'POST', json: { email: `burst${i}@example.com`, password: password() } }).then((r) => {
            results.push({ status: r.status, ms: Date.now() - started, json: r.json, headers: r.headers });
            return r;
          }),
        );
      // /health answers while the hashes run
      const h0 = Date.now();
      const h = await request(t, '/health');
      assert.equal(h.status, 200);
      assert.ok(Date.now() - h0 < 2000, `/health took ${Date.now() - h0} ms`);
      await Promise.all(reqs);
      const busy = results.filter((r) => r.status === 503);
      const ok = results.filter((r) => r.status === 201);
      assert.ok(ok.length >= 2, JSON.stringify(results.map((r) => r.status)));
      assert.ok(busy.length >= 1, JSON.stringify(results.map((r) => r.status)));
      for (const b of busy) {
        assert.equal(b.json.error, 'hash_busy');
        assert.equal(b.headers['retry-after'], '1');
      }
      // refusals come before the first hash is done
      const firstOk = Math.min(...ok.map((r) => r.ms));
      assert.ok(Math.min(...busy.map((r) => r.ms)) <= firstOk, JSON.stringify(results.map((r) => [r.status, r.ms])));
      const m = await scrape(t);
      assert.equal(metric(m, 'tokend_users_password_hashes_total', { outcome: 'refused' }), busy.length);
      assert.equal(metric(m, 'tokend_users_password_hashes_total', { outcome: 'hashed' }), ok.length);
    });
  });
}
