// hardening_api.test.mjs: issue 13, the API layer and start-up: failures
// rate-limited per address and their events coalesced; authentication that
// decides missing/malformed without the store; /health, /ready and /metrics
// that never wait on the store; stop signals honoured while the store
// connects; a data dir that remembers its installation; the listen socket
// bound before anything is created; actions and their events in one
// transaction; the data dir's mode, the root token file, the last admin,
// SIGHUP.
import assert from 'node:assert/strict';
import { chmod, chown, lstat, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';

import {
  allEvents,
  api,
  backends,
  createPgDatabase,
  freshDir,
  metric,
  parseMetrics,
  psql,
  request,
  serveExpectingExit,
  spawnServe,
  stallableProxy,
  startTokend,
  stopAndScan,
  storeSql,
  waitFor,
  withTimeout,
  SUITE_TIMEOUT_MS,
} from './lib/tokend.mjs';

const BAD = 'Bearer tko_000000000000000000000000000000000000'; // well-formed length, bad checksum

/** Events that a flood from `from` left behind. */
async function eventsFrom(t, from) {
  const evs = await allEvents(t, 'kind=operator&action=authenticate');
  return evs.filter((e) => e.detail && e.detail.remote === from);
}


for (const backend of backends()) {
  describe(`hardening: the API layer (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    it('a flood of bad tokens from one address gets 429 + Retry-After, leaves a bounded number of events, and a good token still works', async (tc) => {
      const t = await startTokend({ backend, args: ['--auth-fail-limit', '20', '--auth-fail-window', '60'] });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const from = '127.0.0.5';
      const statuses = new Map();
      let limited = null;
      for (let round = 0; round < 50; round++) {
        const res = await Promise.all(
          Array.from({ length: 20 }, (_, i) => request(t, '/v1/whoami', { auth: i % 2 ? BAD : 'Bearer nope', from })),
        );
        for (const r of res) {
          statuses.set(r.status, (statuses.get(r.status) || 0) + 1);
          if (r.status === 429) limited = r;
        }
        if (round === 25) {
          // Meanwhile, from the same address: the good token is answered.
          const ok = await request(t, '/v1/whoami', { token: t.token, from });
          assert.equal(ok.status, 200, ok.text);
        }
      }
      assert.equal(statuses.get(401), 20, `the budget is 20 failures: ${JSON.stringify([...statuses])}`);
      assert.equal(statuses.get(429), 980);
      assert.equal(limited.json.error, 'rate_limited');
      assert.match(limited.headers['retry-after'] || '', /^[1-9][0-9]*$/);
      assert.ok(Number(limited.headers['retry-after']) <= 60);
      assert.equal(typeof limited.json.message, 'string');
      // Another address has its own budget.
      const other = await request(t, '/v1/whoami', { auth: BAD, from: '127.0.0.6' });
      assert.equal(other.status, 401, other.text);
      // 1,000 failures, a handful of events: one per reason, one for the limit.
      const evs = await eventsFrom(t, from);
      assert.ok(evs.length >= 2 && evs.length < 10, `${evs.length} events: ${JSON.stringify(evs.map((e) => e.detail))}`);
      assert.deepEqual([...new Set(evs.map((e) => e.detail.reason))].sort(), ['malformed', 'rate_limited']);
      assert.equal((await request(t, '/health')).status, 200);
      assert.equal((await t.stop()).code, 0);
      // The repeats within the budget were counted, and written as one event
      // at stop: 20 failures = the first + a count of 19.
      const again = await startTokend({ backend, dataDir: t.dataDir, store: t.store });
      tc.after(() => again.stop('SIGKILL').catch(() => {}));
      const after = await eventsFrom(again, from);
      const counted = after.filter((e) => e.detail.count !== undefined);
      assert.equal(counted.length, 1, JSON.stringify(after.map((e) => e.detail)));
      assert.equal(counted[0].detail.count, 19);
      assert.equal(counted[0].detail.reason, 'malformed');
      assert.ok(after.length < 10);
      assert.equal((await again.stop()).code, 0);
    });

    it('a refused token that is known leaves its event in its own tenant, not the default one', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const c = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'elsewhere', role: 'viewer' } });
      assert.equal(c.status, 201);
      const other = '01900000-0000-7000-8000-0000000000aa';
      await storeSql(t, `INSERT INTO tenants (id, name, created_at) VALUES ('${other}', 'other', 0)`);
      await storeSql(t, `UPDATE operator_tokens SET tenant_id = '${other}', revoked_at = 1 WHERE id = '${c.json.id}'`);
      const r = await request(t, '/v1/whoami', { token: c.json.token, from: '127.0.0.9' });
      assert.equal(r.status, 401);
      assert.equal(r.json.reason, 'revoked');
      const mine = await eventsFrom(t, '127.0.0.9');
      assert.equal(mine.length, 0, 'not in the default tenant');
      const theirs = await storeSql(t, `SELECT count(*) FROM events WHERE tenant_id = '${other}' AND action = 'authenticate' AND subject_id = '${c.json.id}'`);
      assert.equal(theirs.trim(), '1');
      await stopAndScan(t); // exit 0, and the secret scan
    });

    it('POST /v1/sys/init from one address is limited the same way', async (tc) => {
      const t = await startTokend({ backend, args: ['--auth-fail-limit', '5', '--auth-fail-window', '60'] });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const seen = [];
      for (let i = 0; i < 8; i++) seen.push(await request(t, '/v1/sys/init', { method: 'POST', json: { shares: 1, threshold: 1 }, from: '127.0.0.7' }));
      assert.deepEqual(seen.map((r) => r.status), [409, 409, 409, 409, 409, 429, 429, 429]);
      assert.match(seen[7].headers['retry-after'] || '', /^[1-9][0-9]*$/);
      assert.equal(seen[7].json.error, 'rate_limited');
      assert.equal((await t.stop()).code, 0);
    });

    it('an admin cannot revoke the last active admin token of the tenant (409 last_admin)', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const list = await api(t, '/v1/operator-tokens');
      const root = list.json.tokens.find((x) => x.name === 'root');
      const r = await api(t, `/v1/operator-tokens/${root.id}`, { method: 'DELETE' });
      assert.equal(r.status, 409, r.text);
      assert.equal(r.json.error, 'last_admin');
      assert.equal((await api(t, '/v1/whoami')).status, 200, 'still active');
      // A viewer can be revoked; with a second admin, the root can.
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'v', role: 'viewer' } });
      assert.equal((await api(t, `/v1/operator-tokens/${v.json.id}`, { method: 'DELETE' })).status, 200);
      const a = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'second', role: 'admin' } });
      assert.equal(a.status, 201, a.text);
      const ok = await api(t, `/v1/operator-tokens/${root.id}`, { method: 'DELETE' });
      assert.equal(ok.status, 200, ok.text);
      const again = await request(t, `/v1/operator-tokens/${a.json.id}`, { method: 'DELETE', token: a.json.token });
      assert.equal(again.status, 409, again.text);
      assert.equal((await t.stop()).code, 0);
    });

    it('token create and revoke fail, changing nothing, when their event cannot be written', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const keep = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'keep', role: 'viewer' } });
      assert.equal(keep.status, 201);
      if (backend === 'postgres') {
        await storeSql(
          t,
          "CREATE FUNCTION no_events() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'events are read-only'; END $$ LANGUAGE plpgsql; " +
            'CREATE TRIGGER no_events BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION no_events();',
        );
      } else {
        await storeSql(t, "CREATE TRIGGER no_events BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'events are read-only'); END;");
      }
      const c = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'ghost', role: 'viewer' } });
      assert.ok(c.status >= 500, `${c.status} ${c.text}`);
      assert.equal(c.json.token, undefined);
      const d = await api(t, `/v1/operator-tokens/${keep.json.id}`, { method: 'DELETE' });
      assert.ok(d.status >= 500, `${d.status} ${d.text}`);
      const rows = await storeSql(t, "SELECT name || ':' || COALESCE(revoked_at, 0) FROM operator_tokens WHERE name IN ('ghost', 'keep')");
      assert.deepEqual(rows.trim().split('\n'), ['keep:0'], 'no ghost token, keep not revoked');
      assert.equal((await request(t, '/v1/whoami', { token: keep.json.token })).status, 200);
      await storeSql(t, backend === 'postgres' ? 'DROP TRIGGER no_events ON events' : 'DROP TRIGGER no_events');
      const c2 = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'after', role: 'viewer' } });
      assert.equal(c2.status, 201, c2.text);
      const evs = await allEvents(t, 'kind=operator&action=token_create');
      assert.ok(evs.some((e) => e.subject_id === c2.json.id));
      assert.equal((await t.stop()).code, 0);
    });

    it('a data dir whose store vanished refuses to start as a new installation (exit 2) unless --allow-new-store', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const marker = await readFile(path.join(t.dataDir, 'installation'), 'utf8');
      const m = /^tokend installation ([0-9a-f-]{36})\n$/.exec(marker);
      assert.ok(m, marker);
      assert.equal((await t.stop()).code, 0);
      let store = t.store;
      if (backend === 'sqlite') {
        for (const f of ['tokend.db', 'tokend.db-wal', 'tokend.db-shm']) await rm(path.join(t.dataDir, f), { force: true });
      } else {
        store = await createPgDatabase(); // an empty database in place of the old one
      }
      const r = await serveExpectingExit({ backend, dataDir: t.dataDir, store });
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stderr.includes(m[1]), `names the installation: ${r.stderr}`);
      assert.match(r.stderr, /empty/);
      assert.match(r.stderr, /--allow-new-store/);
      assert.doesNotMatch(r.stdout, /listening/);
      if (backend === 'sqlite') assert.ok(!(await readdir(t.dataDir)).includes('tokend.db'), 'no new store file');
      // Another installation's store is named as such.
      const foreign = await startTokend({ backend });
      tc.after(() => foreign.stop('SIGKILL').catch(() => {}));
      assert.equal((await foreign.stop()).code, 0);
      const foreignStore = backend === 'sqlite' ? `sqlite:${foreign.dataDir}/tokend.db` : foreign.store;
      const f = await serveExpectingExit({ backend, dataDir: t.dataDir, store: foreignStore });
      assert.equal(f.code, 2, f.stderr);
      assert.match(f.stderr, /another installation/);
      // Told to, it starts, and the marker follows the new store (the old
      // installation's auto-unseal key file goes too: --dev makes a new one).
      await rm(path.join(t.dataDir, 'unseal.key'));
      const n = await startTokend({ backend, dataDir: t.dataDir, store, args: ['--allow-new-store'] });
      tc.after(() => n.stop('SIGKILL').catch(() => {}));
      assert.equal((await request(n, '/v1/whoami', { token: n.token })).status, 200);
      const marker2 = await readFile(path.join(t.dataDir, 'installation'), 'utf8');
      assert.notEqual(marker2, marker);
      assert.equal((await n.stop()).code, 0);
      const again = await startTokend({ backend, dataDir: t.dataDir, store });
      assert.equal((await again.stop()).code, 0);
    });

    it('a port in use changes nothing: no data dir, no store, no root token', async (tc) => {
      const blocker = net.createServer();
      await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
      tc.after(() => new Promise((resolve) => blocker.close(resolve)));
      const dataDir = path.join(await freshDir('bind'), 'data');
      const r = await serveExpectingExit({ backend, dataDir, listen: `127.0.0.1:${blocker.address().port}` });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /in use/i);
      await assert.rejects(stat(dataDir), 'the data dir was not even created');
      if (backend === 'postgres') {
        const tables = await psql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'", r.store);
        assert.equal(tables.trim(), '0', 'no schema was created');
      }
    });

    it('SIGHUP is logged and ignored; SIGTERM still stops it', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      t.proc.kill('SIGHUP');
      await waitFor(() => t.stderr().includes('received SIGHUP'), { message: 'the SIGHUP log line' });
      assert.equal((await request(t, '/health')).status, 200);
      assert.equal((await api(t, '/v1/whoami')).status, 200);
      assert.equal((await t.stop()).code, 0);
    });

    it('the data dir is created 0700; a group- or world-writable one is refused', async (tc) => {
      const base = await freshDir('mode');
      const dataDir = path.join(base, 'data');
      const t = await startTokend({ backend, dataDir });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      assert.equal((await stat(dataDir)).mode & 0o777, 0o700);
      assert.equal((await stat(path.join(dataDir, 'root-token'))).mode & 0o777, 0o600);
      assert.equal((await t.stop()).code, 0);
      await chmod(dataDir, 0o777);
      const r = await serveExpectingExit({ backend, dataDir, store: t.store });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /writable by every user/);
      assert.ok(r.stderr.includes(dataDir));
      await chmod(dataDir, 0o770);
      const g = await serveExpectingExit({ backend, dataDir, store: t.store });
      assert.equal(g.code, 2, g.stderr);
      assert.match(g.stderr, /writable by its group/);
      await chmod(dataDir, 0o700);
      if (process.getuid() === 0) {
        await chown(dataDir, 65534, 65534);
        const o = await serveExpectingExit({ backend, dataDir, store: t.store });
        assert.equal(o.code, 2, o.stderr);
        assert.match(o.stderr, /belongs to user id 65534/);
        await chown(dataDir, 0, 0);
      }
    });

    it('the root token file: an old file gets mode 0600, and a symlink there is replaced, never followed', async (tc) => {
      const dataDir = await freshDir('rt');
      await chmod(dataDir, 0o700);
      const outside = path.join(await freshDir('rt-target'), 'victim');
      await writeFile(outside, 'do not touch\n', { mode: 0o644 });
      await symlink(outside, path.join(dataDir, 'root-token'));
      const t = await startTokend({ backend, dataDir });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      assert.equal(await readFile(outside, 'utf8'), 'do not touch\n', 'the link target is untouched');
      const st = await lstat(path.join(dataDir, 'root-token'));
      assert.ok(st.isFile(), 'a regular file now');
      assert.equal(st.mode & 0o777, 0o600);
      assert.equal((await api(t, '/v1/whoami')).status, 200);
      assert.equal((await t.stop()).code, 0);
      // An old world-readable file, on a fresh store: rewritten 0600.
      const dir2 = await freshDir('rt2');
      await chmod(dir2, 0o700);
      await writeFile(path.join(dir2, 'root-token'), 'old\n', { mode: 0o644 });
      await chmod(path.join(dir2, 'root-token'), 0o644);
      const t2 = await startTokend({ backend, dataDir: dir2 });
      tc.after(() => t2.stop('SIGKILL').catch(() => {}));
      assert.equal((await stat(path.join(dir2, 'root-token'))).mode & 0o777, 0o600);
      assert.equal((await t2.stop()).code, 0);
    });

    if (backend === 'postgres') {
      it('missing and malformed are decided without the store; a 503 from the store carries Retry-After', async (tc) => {
        const t = await startTokend({ backend });
        tc.after(() => t.stop('SIGKILL').catch(() => {}));
        const db = new URL(t.store).pathname.slice(1);
        await psql(`ALTER DATABASE ${db} WITH ALLOW_CONNECTIONS false`);
        try {
          await psql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db}' AND pid <> pg_backend_pid()`);
          await waitFor(async () => (await request(t, '/ready')).status === 503, { message: '/ready to see the store gone' });
          const none = await request(t, '/v1/whoami', { from: '127.0.0.8' });
          assert.equal(none.status, 401, none.text);
          assert.equal(none.json.reason, 'missing');
          const bad = await request(t, '/v1/whoami', { auth: BAD, from: '127.0.0.8' });
          assert.equal(bad.status, 401, bad.text);
          assert.equal(bad.json.reason, 'malformed');
          // a cached authentication is trusted for 1 s after the last good
          // read of the auth epochs; then the store decides (503)
          const good = await waitFor(
            async () => {
              const g = await api(t, '/v1/whoami');
              return g.status !== 200 && g;
            },
            { timeoutMs: 5000, message: 'the cached token to stop being trusted' },
          );
          assert.equal(good.status, 503, good.text);
          assert.match(good.headers['retry-after'] || '', /^[1-9][0-9]*$/);
        } finally {
          await psql(`ALTER DATABASE ${db} WITH ALLOW_CONNECTIONS true`);
        }
        await waitFor(async () => (await api(t, '/v1/whoami')).status === 200, { message: 'the store to be back' });
        assert.equal((await t.stop()).code, 0);
      });

      it('/health, /ready and /metrics answer while the store stalls; /ready says store_stalled', async (tc) => {
        const pg = new URL(process.env.TOKEND_TEST_PG);
        const proxy = await stallableProxy(pg.hostname, Number(pg.port));
        tc.after(() => proxy.close());
        const db = new URL(await createPgDatabase());
        db.host = `127.0.0.1:${proxy.port}`;
        const t = await startTokend({ backend, store: db.toString() });
        tc.after(() => t.stop('SIGKILL').catch(() => {}));
        await waitFor(async () => (await request(t, '/ready')).status === 200, { message: '/ready 200 through the proxy' });
        proxy.stall();
        // A store call that hangs (it holds a connection and an HTTP worker).
        const hung = api(t, '/v1/operator-tokens', { timeoutMs: 60000 }).catch((e) => e);
        const r = await waitFor(
          async () => {
            const x = await request(t, '/ready', { timeoutMs: 3000 });
            return x.status === 503 && x.json.reason === 'store_stalled' && x;
          },
          { timeoutMs: 15000, message: '/ready to say store_stalled' },
        );
        assert.equal(r.json.error, 'not_ready');
        assert.equal((await request(t, '/health', { timeoutMs: 3000 })).status, 200);
        const m = await request(t, '/metrics', { timeoutMs: 3000 });
        assert.equal(m.status, 200);
        assert.equal(metric(parseMetrics(m.text), 'tokend_store_up'), 0);
        proxy.resume();
        await waitFor(async () => (await request(t, '/ready', { timeoutMs: 3000 })).status === 200, { timeoutMs: 15000, message: '/ready 200 once the store answers again' });
        await hung;
        assert.equal((await t.stop()).code, 0);
      });
    }
  });
}

describe('hardening: stop signals during start', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('SIGTERM while the store connect hangs (a server that accepts and never answers) exits promptly', async (tc) => {
    const sockets = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
    tc.after(() => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => silent.close(resolve));
    });
    const s = await spawnServe({ backend: 'postgres', store: `postgres://tokend@127.0.0.1:${silent.address().port}/tokend` });
    tc.after(() => {
      if (s.proc.exitCode === null && s.proc.signalCode === null) s.proc.kill('SIGKILL');
    });
    await waitFor(() => sockets.length > 0, { message: 'tokend to connect to the silent server' });
    // While it starts, /health answers already (the socket is bound first).
    const port = await waitFor(() => {
      const m = /listen socket bound on port (\d+)/.exec(s.stderr());
      return m && Number(m[1]);
    }, { message: 'the early listen line' });
    assert.equal((await request(`http://127.0.0.1:${port}`, '/health', { timeoutMs: 3000 })).status, 200);
    const ready = await request(`http://127.0.0.1:${port}`, '/ready', { timeoutMs: 3000 });
    assert.equal(ready.status, 503);
    assert.equal(ready.json.reason, 'starting');
    const who = await request(`http://127.0.0.1:${port}`, '/v1/sys/init', { method: 'POST', json: {}, timeoutMs: 3000 });
    assert.equal(who.status, 503);
    assert.equal(who.json.reason, 'starting');
    const t0 = Date.now();
    s.proc.kill('SIGTERM');
    const res = await withTimeout(s.exited, 5000, 'tokend to exit after SIGTERM during start');
    await s.closed;
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(res.code, 1, s.stderr());
    assert.match(s.stderr(), /stop signal received while starting/);
    assert.doesNotMatch(s.stdout(), /listening on port/);
  });
});
