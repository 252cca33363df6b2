// authcache.test.mjs: authentication off the disk (issue 16 item 3).
// PATCH /v1/operator-tokens/{id} (role change, last admin); a revoke or a
// role change takes effect at once on the node that made it, and within
// one second on another node sharing the store; cached authentication
// goes on while the store stalls only within the 1 s trust window; and
// auth_cache_size 0 turns the cache off. Two nodes run on PostgreSQL and
// on one SQLite file.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import {
  allEvents,
  api,
  backends,
  createPgDatabase,
  createTenant,
  delay,
  freshDir,
  metric,
  request,
  scrape,
  stallableProxy,
  startTokend,
  stopAndScan,
  waitFor,
  SUITE_TIMEOUT_MS,
} from './lib/tokend.mjs';

const hasPg = backends().includes('postgres');

async function issue(node, name, role, token = node.token) {
  const c = await request(node, '/v1/operator-tokens', { method: 'POST', token, json: { name, role } });
  assert.equal(c.status, 201, c.text);
  return c.json;
}

function patch(node, id, body, token = node.token) {
  return request(node, `/v1/operator-tokens/${id}`, { method: 'PATCH', token, json: body });
}

function assertNoSecret(text, secrets, where) {
  for (const s of secrets) assert.ok(!text.includes(s), `a token secret appears in ${where}`);
}

for (const backend of backends()) {
  describe(`authentication cache (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    it('PATCH changes the role (at once on this node), checks its body, and keeps the last admin', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const x = await issue(t, 'x', 'admin');
      // cached as admin: it may issue tokens
      for (let i = 0; i < 3; i++) assert.equal((await request(t, '/v1/whoami', { token: x.token })).json.role, 'admin');
      const y = await issue(t, 'y', 'operator', x.token);

      const p = await patch(t, x.id, { role: 'viewer' });
      assert.equal(p.status, 200, p.text);
      assert.equal(p.json.id, x.id);
      assert.equal(p.json.role, 'viewer');
      assert.equal(p.json.name, 'x');
      assert.equal(p.json.token, undefined, 'never the secret again');
      // the same node answers from the new role at once
      assert.equal((await request(t, '/v1/whoami', { token: x.token })).json.role, 'viewer');
      const refused = await request(t, '/v1/operator-tokens', { method: 'POST', token: x.token, json: { name: 'z' } });
      assert.equal(refused.status, 403, refused.text);
      assert.equal(refused.json.error, 'forbidden');
      // the same role again: 200, nothing changes
      const same = await patch(t, x.id, { role: 'viewer' });
      assert.equal(same.status, 200, same.text);
      assert.equal(same.json.role, 'viewer');

      // hostile and wrong bodies: 400 naming the field
      for (const [body, code, field] of [
        [{}, 'missing_field', 'role'],
        [{ role: 'root' }, 'invalid_field', 'role'],
        [{ role: 7 }, 'invalid_field', 'role'],
        [{ role: 'viewer', name: 'renamed' }, 'unknown_field', 'name'],
        [{ role: 'a'.repeat(5000) }, 'invalid_field', 'role'],
      ]) {
        const r = await patch(t, y.id, body);
        assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 60)}: ${r.text}`);
        assert.equal(r.json.error, code);
        assert.equal(r.json.field, field);
      }
      for (const raw of ['[1]', '{"role": "admin\\u0000"}', '{"role": "viewer", "role": "admin"}', '{']) {
        const r = await request(t, `/v1/operator-tokens/${y.id}`, { method: 'PATCH', token: t.token, body: raw });
        assert.equal(r.status, 400, `${raw}: ${r.text}`);
      }
      assert.equal((await request(t, '/v1/whoami', { token: y.token })).json.role, 'operator', 'nothing changed');
      // unknown, malformed and another tenant's ids: 404, nothing changed
      assert.equal((await patch(t, '01900000-0000-7000-8000-000000000000', { role: 'viewer' })).status, 404);
      assert.equal((await patch(t, 'not-an-id', { role: 'viewer' })).status, 404);
      const acme = await createTenant(t);
      const theirs = await patch(t, acme.tokenId, { role: 'viewer' });
      assert.equal(theirs.status, 404, theirs.text);
      assert.equal((await request(t, '/v1/whoami', { token: acme.token })).json.role, 'admin');
      // only an admin may change roles
      const byOp = await patch(t, x.id, { role: 'admin' }, y.token);
      assert.equal(byOp.status, 403, byOp.text);
      // a revoked token has no role to change
      const gone = await issue(t, 'gone', 'viewer');
      assert.equal((await api(t, `/v1/operator-tokens/${gone.id}`, { method: 'DELETE' })).status, 200);
      assert.equal((await patch(t, gone.id, { role: 'admin' })).status, 404);

      // the last admin of a tenant cannot be demoted (409), in either tenant
      const root = (await api(t, '/v1/whoami')).json;
      const last = await patch(t, root.token_id, { role: 'operator' });
      assert.equal(last.status, 409, last.text);
      assert.equal(last.json.error, 'last_admin');
      assert.equal((await api(t, '/v1/whoami')).json.role, 'admin');
      const l2 = await request(t, `/v1/operator-tokens/${acme.tokenId}`, { method: 'PATCH', token: acme.token, json: { role: 'viewer' } });
      assert.equal(l2.status, 409, l2.text);
      assert.equal(l2.json.error, 'last_admin');
      // with a second admin, the first may step down
      const p2 = await patch(t, x.id, { role: 'admin' });
      assert.equal(p2.status, 200, p2.text);
      const down = await patch(t, root.token_id, { role: 'operator' });
      assert.equal(down.status, 200, down.text);
      assert.equal((await api(t, '/v1/whoami')).json.role, 'operator');
      assert.equal((await patch(t, root.token_id, { role: 'admin' }, x.token)).status, 200);

      // each change left one event with the roles, in the token's tenant
      const evs = await allEvents(t, 'kind=operator&action=token_role_change');
      assert.equal(evs.length, 4, JSON.stringify(evs.map((e) => e.detail)));
      const first = evs[evs.length - 1];
      assert.equal(first.subject_id, x.id);
      assert.equal(first.outcome, 'ok');
      assert.equal(first.detail.role, 'viewer');
      assert.equal(first.detail.previous_role, 'admin');
      assertNoSecret(JSON.stringify(evs), [x.token, y.token, t.token], 'the events');
      assertNoSecret(t.stderr(), [x.token, y.token, t.token, acme.token], 'the log');
      await stopAndScan(t);
    });

    it('a revoke takes effect at once on the node that made it, cached or not', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const x = await issue(t, 'x', 'viewer');
      for (let i = 0; i < 3; i++) assert.equal((await request(t, '/v1/whoami', { token: x.token })).status, 200);
      assert.equal((await api(t, `/v1/operator-tokens/${x.id}`, { method: 'DELETE' })).status, 200);
      const r = await request(t, '/v1/whoami', { token: x.token });
      assert.equal(r.status, 401, r.text);
      assert.equal(r.json.reason, 'revoked');
      // the series of the cache: hits, the dropped entries (the revoke drops
      // every entry of its tenant filled before it), entries now
      assert.equal((await api(t, '/v1/whoami')).status, 200); // the root token again
      const m = await scrape(t);
      assert.ok(metric(m, 'tokend_auth_cache_lookups_total', { result: 'hit' }) >= 2, 'hits counted');
      assert.ok(metric(m, 'tokend_auth_cache_lookups_total', { result: 'miss' }) >= 1, 'misses counted');
      assert.ok(metric(m, 'tokend_auth_cache_invalidations_total') >= 1, 'the revoke dropped entries');
      assert.ok(metric(m, 'tokend_auth_cache_entries') >= 1, 'the root token is cached again');
      assert.equal(metric(m, 'tokend_auth_cache_evictions_total'), 0);
      assert.ok(m.some((x) => x.name === 'tokend_auth_cache_poll_failures_total'));
      await stopAndScan(t);
    });

    it('auth_cache_size 0: no cache, every authentication reads the store', async (tc) => {
      const t = await startTokend({ backend, args: ['--auth-cache-size', '0'] });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      assert.match(t.stderr(), /auth cache: off/);
      const x = await issue(t, 'x', 'admin');
      assert.equal((await request(t, '/v1/whoami', { token: x.token })).json.role, 'admin');
      assert.equal((await patch(t, x.id, { role: 'viewer' })).status, 200);
      assert.equal((await request(t, '/v1/whoami', { token: x.token })).json.role, 'viewer');
      assert.equal((await api(t, `/v1/operator-tokens/${x.id}`, { method: 'DELETE' })).status, 200);
      assert.equal((await request(t, '/v1/whoami', { token: x.token })).status, 401);
      const m = await scrape(t);
      assert.ok(!m.some((x) => x.name.startsWith('tokend_auth_cache_')), 'no cache, no samples');
      await stopAndScan(t);
    });
  });
}

describe('authentication cache on two nodes sharing one SQLite file (sqlite)', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('a revoke and a role change on node A reach node B within one second', async (tc) => {
    const a = await startTokend({ backend: 'sqlite', args: ['--node-name', 'node-a'] });
    tc.after(() => a.stop('SIGKILL').catch(() => {}));
    const dir = await freshDir('node-b');
    await copyFile(path.join(a.dataDir, 'unseal.key'), path.join(dir, 'unseal.key'));
    const b = await startTokend({ backend: 'sqlite', store: `sqlite:${path.join(a.dataDir, 'tokend.db')}`, dataDir: dir, args: ['--node-name', 'node-b'], allowNoRootToken: true });
    tc.after(() => b.stop('SIGKILL').catch(() => {}));
    b.token = a.token;
    const x = await issue(a, 'x', 'admin');
    const y = await issue(a, 'y', 'viewer');
    for (let i = 0; i < 3; i++) {
      assert.equal((await request(b, '/v1/whoami', { token: x.token })).json.role, 'admin');
      assert.equal((await request(b, '/v1/whoami', { token: y.token })).status, 200);
    }
    assert.equal((await patch(a, x.id, { role: 'viewer' })).status, 200);
    await waitFor(async () => (await request(b, '/v1/whoami', { token: x.token })).json?.role === 'viewer', {
      timeoutMs: 1000,
      intervalMs: 25,
      message: 'node B to see the new role',
    });
    assert.equal((await api(a, `/v1/operator-tokens/${y.id}`, { method: 'DELETE' })).status, 200);
    const r = await waitFor(
      async () => {
        const w = await request(b, '/v1/whoami', { token: y.token });
        return w.status === 401 && w;
      },
      { timeoutMs: 1000, intervalMs: 25, message: 'node B to refuse the revoked token' },
    );
    assert.equal(r.json.reason, 'revoked');
    await stopAndScan(b);
    await stopAndScan(a);
  });
});

describe('authentication cache on two nodes (postgres)', { timeout: SUITE_TIMEOUT_MS, skip: hasPg ? false : 'needs TOKEND_TEST_PG (tests/with-postgres.sh)' }, () => {
  /** Two nodes on one database (as multinode.test.mjs), the store reached
   * through a proxy that can stall it for node B. */
  async function twoNodes(tc) {
    const store = await createPgDatabase();
    const a = await startTokend({ backend: 'postgres', store, args: ['--node-name', 'node-a'] });
    tc.after(() => a.stop('SIGKILL').catch(() => {}));
    const pg = new URL(process.env.TOKEND_TEST_PG);
    const proxy = await stallableProxy(pg.hostname, Number(pg.port));
    tc.after(() => proxy.close());
    const viaProxy = new URL(store);
    viaProxy.host = `127.0.0.1:${proxy.port}`;
    const dir = await freshDir('node-b');
    await copyFile(path.join(a.dataDir, 'unseal.key'), path.join(dir, 'unseal.key'));
    const b = await startTokend({ backend: 'postgres', store: viaProxy.toString(), dataDir: dir, args: ['--node-name', 'node-b'], allowNoRootToken: true });
    tc.after(() => b.stop('SIGKILL').catch(() => {}));
    b.token = a.token;
    return { a, b, proxy };
  }

  it('a revoke and a role change on node A reach node B within one second', async (tc) => {
    const { a, b } = await twoNodes(tc);
    const x = await issue(a, 'x', 'admin');
    const y = await issue(a, 'y', 'viewer');
    // node B has both cached
    for (let i = 0; i < 3; i++) {
      assert.equal((await request(b, '/v1/whoami', { token: x.token })).json.role, 'admin');
      assert.equal((await request(b, '/v1/whoami', { token: y.token })).status, 200);
    }
    // role change on A
    assert.equal((await patch(a, x.id, { role: 'viewer' })).status, 200);
    await waitFor(async () => (await request(b, '/v1/whoami', { token: x.token })).json?.role === 'viewer', {
      timeoutMs: 1000,
      intervalMs: 25,
      message: 'node B to see the new role',
    });
    const refused = await request(b, '/v1/operator-tokens', { method: 'POST', token: x.token, json: { name: 'no' } });
    assert.equal(refused.status, 403, refused.text);
    // revoke on A
    assert.equal((await api(a, `/v1/operator-tokens/${y.id}`, { method: 'DELETE' })).status, 200);
    const r = await waitFor(
      async () => {
        const w = await request(b, '/v1/whoami', { token: y.token });
        return w.status === 401 && w;
      },
      { timeoutMs: 1000, intervalMs: 25, message: 'node B to refuse the revoked token' },
    );
    assert.equal(r.json.reason, 'revoked');
    // and the other way: a change on B reaches A
    for (let i = 0; i < 2; i++) assert.equal((await request(a, '/v1/whoami', { token: x.token })).json.role, 'viewer');
    assert.equal((await patch(b, x.id, { role: 'operator' })).status, 200);
    await waitFor(async () => (await request(a, '/v1/whoami', { token: x.token })).json?.role === 'operator', {
      timeoutMs: 1000,
      intervalMs: 25,
      message: 'node A to see the role set on B',
    });
    for (const n of [a, b]) assertNoSecret(n.stderr(), [x.token, y.token, a.token], 'the log');
    await stopAndScan(b);
    await stopAndScan(a);
  });

  it('while the store stalls, cached authentication answers only within the 1 s trust window', async (tc) => {
    const { a, b, proxy } = await twoNodes(tc);
    const x = await issue(a, 'x', 'viewer');
    for (let i = 0; i < 3; i++) assert.equal((await request(b, '/v1/whoami', { token: x.token })).status, 200);
    await delay(300); // at least one poll of B's since the fill
    proxy.stall();
    const stalledAt = Date.now();
    // right away: answered from the cache, without the store
    const sentAt = Date.now();
    const first = await request(b, '/v1/whoami', { token: x.token, timeoutMs: 3000 }).catch((e) => e);
    assert.ok(!(first instanceof Error), `a cached token answers while the store stalls: ${first}`);
    assert.equal(first.status, 200, first.text);
    assert.ok(sentAt - stalledAt < 1000);
    // Keep asking: every 200 was sent within the window; after it, the
    // store decides, and a stalled store answers nothing (or 503 once the
    // probe calls it stalled).
    const hung = [];
    let notOk = null;
    while (!notOk && Date.now() - stalledAt < 6000) {
      const at = Date.now();
      const p = request(b, '/v1/whoami', { token: x.token, timeoutMs: 60000 }).catch((e) => e);
      const w = await Promise.race([p, delay(700).then(() => 'pending')]);
      if (w === 'pending') {
        hung.push(p);
        notOk = { at, what: 'no answer' };
      } else if (w instanceof Error || w.status !== 200) {
        notOk = { at, what: w instanceof Error ? w.message : `${w.status} ${w.text}` };
      } else {
        assert.ok(at - stalledAt <= 1000 + 150, `a cached answer ${at - stalledAt} ms after the stall began`);
      }
      await delay(50);
    }
    assert.ok(notOk, 'the cache stopped answering once the window passed');
    assert.ok(notOk.at - stalledAt <= 1000 + 250 + 150, `refused ${notOk.at - stalledAt} ms after the stall (${notOk.what})`);
    // node A (not behind the proxy) revokes meanwhile; once B reaches the
    // store again it refuses the token, never answering from its old cache
    assert.equal((await api(a, `/v1/operator-tokens/${x.id}`, { method: 'DELETE' })).status, 200);
    proxy.resume();
    await Promise.all(hung);
    const after = await waitFor(
      async () => {
        const w = await request(b, '/v1/whoami', { token: x.token, timeoutMs: 5000 });
        return w.status !== 503 && w;
      },
      { timeoutMs: 15000, message: 'node B to reach the store again' },
    );
    assert.equal(after.status, 401, after.text);
    assert.equal(after.json.reason, 'revoked');
    const m = await scrape(b);
    assert.ok(metric(m, 'tokend_auth_cache_lookups_total', { result: 'untrusted' }) >= 1, 'untrusted lookups counted');
    await stopAndScan(b);
    await stopAndScan(a);
  });
});
