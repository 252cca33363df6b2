// http_stall.test.mjs: /health, /ready and /metrics never wait behind a
// handler blocked on the store. libmicrohttpd serves a connection on the
// thread that accepted it; a handler waiting on a held lock (SQLite's
// busy_timeout, PostgreSQL's lock_timeout: 5 s) used to hold up every other
// connection of its thread. Handlers now run on the handler pool
// (handler_threads); these routes stay on the HTTP threads. More blocked
// writers than HTTP threads and than handler threads: the probes answer
// within 1 s, every writer gets its answer (200 once the lock goes, or 503
// store_busy), and a stop while they wait still drains. Both backends: a
// SQLite write lock (BEGIN IMMEDIATE in sqlite3), a PostgreSQL row lock
// (SELECT ... FOR UPDATE on the tenant's row in an open psql transaction,
// the row PATCH /v1/operator-tokens/{id} locks).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { backends, metric, parseMetrics, request, startTokend, stopAndScan, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

/** Hold a lock a role change waits on, from another connection, until
 * release() (at most holdMs: then the holder is killed). */
async function holdLock(t, holdMs = 30000) {
  const [cmd, args, sql] =
    t.backend === 'postgres'
      ? ['psql', [t.store, '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1'], "BEGIN;\nSELECT 1 FROM tenants WHERE name = 'default' FOR UPDATE;\n"]
      : ['sqlite3', [path.join(t.dataDir, 'tokend.db')], 'BEGIN IMMEDIATE;\n'];
  const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) => p.once('exit', resolve));
  const timer = setTimeout(() => p.kill('SIGKILL'), holdMs);
  p.stdin.write(`${sql}SELECT 'locked';\n`);
  await waitFor(() => out.includes('locked') || p.exitCode !== null, { message: `${cmd} to take the lock` });
  assert.ok(out.includes('locked'), `${cmd} did not take the lock: ${err}`);
  let released = null;
  return {
    release() {
      if (!released) {
        clearTimeout(timer);
        p.stdin.end('ROLLBACK;\n');
        released = exited;
      }
      return released;
    },
  };
}

async function newToken(t) {
  const r = await request(t, '/v1/operator-tokens', { method: 'POST', token: t.token, json: { name: `w-${Date.now()}`, role: 'viewer' } });
  assert.equal(r.status, 201, r.text);
  return r.json.id;
}

/** A role change: it locks the tenant's row and writes. Never rejects: a
 * connection error is an answer lost, {status: 0}. */
function roleChange(t, id, role) {
  return request(t, `/v1/operator-tokens/${id}`, { method: 'PATCH', token: t.token, json: { role }, timeoutMs: 60000 }).catch((e) => ({ status: 0, text: String(e) }));
}

async function handlers(t) {
  const r = await request(t, '/metrics', { timeoutMs: 5000 });
  assert.equal(r.status, 200, r.text);
  const s = parseMetrics(r.text);
  return { queued: metric(s, 'tokend_http_handlers', { state: 'queued' }), running: metric(s, 'tokend_http_handlers', { state: 'running' }) };
}

/** Every answer a blocked writer may get: the change, or 503 store_busy. */
function assertAnswered(rs, extra = []) {
  for (const r of rs) {
    if (r.status === 200) continue;
    assert.equal(r.status, 503, `a blocked writer got ${r.status}: ${r.text}`);
    assert.ok(['store_busy', ...extra].includes(r.json?.error), r.text);
  }
}

async function timed(t, route, want = 200) {
  const t0 = Date.now();
  const r = await request(t, route, { timeoutMs: 15000 });
  const ms = Date.now() - t0;
  assert.equal(r.status, want, `${route}: ${r.text}`);
  assert.ok(ms < 1000, `${route} took ${ms} ms while writers wait on the store`);
  return ms;
}

for (const backend of backends()) {
  describe(`/health and /ready never wait behind a handler blocked on the store (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      // one HTTP thread; store_pool 5: three handler threads (store_pool - 2)
      t = await startTokend({ backend, args: ['--threads', '1', '--store-pool', '5'] });
    });
    after(() => stopAndScan(t));

    it('more blocked writers than HTTP and handler threads: /health, /ready and /metrics within 1 s; every writer answered once the lock goes', async () => {
      const id = await newToken(t);
      const lock = await holdLock(t);
      let pending;
      try {
        pending = [];
        for (let i = 0; i < 6; i++) pending.push(roleChange(t, id, i % 2 ? 'viewer' : 'operator'));
        // three run (each waits on the lock), three wait for a handler thread
        await waitFor(async () => {
          const h = await handlers(t);
          return h.running === 3 && h.queued === 3 && h;
        }, { timeoutMs: 15000, message: 'three writers blocked on handler threads and three queued' });
        const times = [];
        for (let i = 0; i < 5; i++) {
          times.push(await timed(t, '/health'));
          times.push(await timed(t, '/ready'));
          times.push(await timed(t, '/metrics'));
        }
        const h = await handlers(t);
        assert.equal(h.running + h.queued, 6, 'the writers are still waiting (the probes did not wait for them)');
      } finally {
        await lock.release();
      }
      const rs = await Promise.all(pending);
      assertAnswered(rs);
      assert.ok(rs.some((r) => r.status === 200), rs.map((r) => `${r.status} ${r.text}`).join('\n'));
      const again = await roleChange(t, id, 'operator');
      assert.equal(again.status, 200, again.text);
      await waitFor(async () => {
        const x = await handlers(t);
        return x.running === 0 && x.queued === 0;
      }, { message: 'the handler pool idle again' });
    });

    it('a writer blocked past the store timeout gets 503 store_busy while /health answers; the next one succeeds', async () => {
      const id = await newToken(t);
      const lock = await holdLock(t);
      let r;
      try {
        const p = roleChange(t, id, 'operator');
        await waitFor(async () => (await handlers(t)).running === 1, { timeoutMs: 15000, message: 'the writer blocked' });
        const t0 = Date.now();
        // through the whole wait (busy_timeout / lock_timeout, 5 s)
        while (Date.now() - t0 < 4000) {
          await timed(t, '/health');
          await timed(t, '/ready');
          await new Promise((res) => setTimeout(res, 200));
        }
        r = await p;
      } finally {
        await lock.release();
      }
      assert.equal(r.status, 503, r.text);
      assert.equal(r.json.error, 'store_busy', r.text);
      const again = await roleChange(t, id, 'operator');
      assert.equal(again.status, 200, again.text);
    });
  });

  describe(`a stop while writers wait on the store drains (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    it('SIGTERM with writers running and queued: each gets an answer, the node exits 0', async () => {
      const t = await startTokend({ backend, args: ['--threads', '1', '--store-pool', '4'] });
      const id = await newToken(t);
      const lock = await holdLock(t);
      let stopped;
      let rs;
      try {
        const pending = [];
        for (let i = 0; i < 4; i++) pending.push(roleChange(t, id, i % 2 ? 'viewer' : 'operator'));
        await waitFor(async () => {
          const h = await handlers(t);
          return h.running === 2 && h.queued === 2;
        }, { timeoutMs: 15000, message: 'two writers blocked and two queued' });
        stopped = t.stop('SIGTERM');
        await new Promise((res) => setTimeout(res, 500));
        await lock.release();
        rs = await Promise.all(pending);
      } finally {
        await lock.release();
      }
      assertAnswered(rs, ['node_stopping']);
      const res = await stopped;
      assert.equal(res.code, 0, t.stderr().slice(-2000));
      await stopAndScan(t, undefined, { events: false });
    });
  });
}
