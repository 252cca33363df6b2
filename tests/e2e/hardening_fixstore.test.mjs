// hardening_fixstore.test.mjs: problems found after issue 13 -- an
// authentication that waited on a held write lock (last_used_at written on
// the read path), a refused start that created the store, names with
// bidirectional or control characters. Both backends where a store is
// involved.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import { allEvents, api, backends, createPgDatabase, psql, serveExpectingExit, sqlite, startTokend, stopAndScan, storeSql, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

/** Hold the store's write lock from another connection until release():
 * SQLite, an sqlite3 process in BEGIN EXCLUSIVE; PostgreSQL, a psql
 * session holding operator_tokens in EXCLUSIVE mode (reads go on, writes
 * wait). Held at most holdMs, then the holder is killed. */
async function holdWriteLock(t, holdMs = 30000) {
  const [cmd, args, sql] =
    t.backend === 'postgres'
      ? ['psql', [t.store, '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1'], 'BEGIN;\nLOCK TABLE operator_tokens IN EXCLUSIVE MODE;\n']
      : ['sqlite3', [path.join(t.dataDir, 'tokend.db')], 'BEGIN EXCLUSIVE;\n'];
  const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) => p.once('exit', resolve));
  const timer = setTimeout(() => p.kill('SIGKILL'), holdMs);
  p.stdin.write(`${sql}SELECT 'locked';\n`);
  await waitFor(() => out.includes('locked') || p.exitCode !== null, { message: `${cmd} to take the write lock` });
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

/** The row of GET /v1/operator-tokens for the token named name. */
async function tokenRow(t, name) {
  const r = await api(t, '/v1/operator-tokens');
  assert.equal(r.status, 200, r.text);
  return r.json.tokens.find((x) => x.name === name);
}

for (const backend of backends()) {
  describe(`authentication never writes to the store (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    it('authenticated reads answer while another connection holds the write lock; last_used_at is written later', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      // The lock first: the token has never been used, so a node that wrote
      // last_used_at on the read path would try (and wait) on every request.
      const lock = await holdWriteLock(t);
      tc.after(() => lock.release());
      // The busy timeout (SQLite) and lock_timeout (PostgreSQL) are 5 s: a
      // read that waited for the lock would take that long each. These do
      // not wait at all; 4 s for all of them is a wide margin, not a speed
      // figure.
      const t0 = Date.now();
      for (let i = 0; i < 5; i++) {
        const r = await api(t, '/v1/whoami');
        assert.equal(r.status, 200, r.text);
      }
      const took = Date.now() - t0;
      assert.ok(took < 4000, `5 authenticated reads took ${took} ms while the write lock was held`);
      await lock.release();
      // The flush writes last_used_at once the lock is gone.
      const row = await waitFor(async () => {
        const x = await tokenRow(t, 'root');
        return x.last_used_at ? x : null;
      }, { timeoutMs: 30000, message: 'last_used_at of the root token' });
      assert.ok(Date.parse(row.last_used_at) >= Date.now() - 120000, row.last_used_at);
      // Coarse: within a minute another use is kept in memory, and the stop
      // writes it (the final flush).
      const first = Number((await storeSql(t, "SELECT last_used_at FROM operator_tokens WHERE name = 'root'")).trim());
      assert.ok(first > 0);
      assert.equal((await api(t, '/v1/whoami')).status, 200);
      const again = Number((await storeSql(t, "SELECT last_used_at FROM operator_tokens WHERE name = 'root'")).trim());
      assert.equal(again, first, 'a use within the minute is not written at once');
      assert.equal((await t.stop()).code, 0);
      const last = Number((await storeSql(t, "SELECT last_used_at FROM operator_tokens WHERE name = 'root'")).trim());
      assert.ok(last > first, `the stop wrote the pending use (${last} > ${first})`);
    });
  });

  describe(`names with bidirectional or control characters are refused (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    it('POST /v1/operator-tokens: 400 invalid_field naming the code point; nothing issued', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const cases = [
        ['invoice\u202Etxt.exe', 'U+202E'],
        ['a\u202Ab', 'U+202A'],
        ['a\u2066b', 'U+2066'],
        ['a\u2069b', 'U+2069'],
        ['a\u200Eb', 'U+200E'],
        ['a\u200Fb', 'U+200F'],
        ['a\u001b[2Jb', 'U+001B'],
        ['a\u009bb', 'U+009B'],
        ['a\u007fb', 'U+007F'],
      ];
      for (const [name, cp] of cases) {
        const r = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name, role: 'viewer' } });
        assert.equal(r.status, 400, `${cp}: ${r.text}`);
        assert.equal(r.json.error, 'invalid_field');
        assert.equal(r.json.field, 'name');
        assert.ok(r.json.message.includes(cp), `${cp}: ${r.json.message}`);
        assert.ok(!r.json.message.includes(name), 'the name is not repeated');
      }
      const ok = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'équipe 运维 👩‍💻', role: 'viewer' } });
      assert.equal(ok.status, 201, ok.text);
      const names = (await api(t, '/v1/operator-tokens')).json.tokens.map((x) => x.name).sort();
      assert.deepEqual(names, ['root', 'équipe 运维 👩‍💻'].sort());
      const issued = await allEvents(t, 'kind=operator&action=token_create');
      assert.equal(issued.length, 1);
      await stopAndScan(t); // exit 0, and the secret scan
    });
  });

  describe(`a refused start leaves the store as it was (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    it('with the installation marker, a missing, emptied or foreign store is refused (exit 2) before anything is created or migrated', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      assert.equal((await t.stop()).code, 0);
      const refused = async (store, what) => {
        const r = await serveExpectingExit({ backend, dataDir: t.dataDir, store });
        assert.equal(r.code, 2, `${what}: ${r.stderr}`);
        assert.match(r.stderr, /--allow-new-store/, what);
        assert.doesNotMatch(r.stdout, /listening/, what);
      };
      if (backend === 'sqlite') {
        const db = path.join(t.dataDir, 'tokend.db');
        const files = async () => (await readdir(t.dataDir)).filter((f) => f.startsWith('tokend.db')).sort();
        for (const f of ['tokend.db', 'tokend.db-wal', 'tokend.db-shm']) await rm(path.join(t.dataDir, f), { force: true });
        await refused(undefined, 'deleted');
        assert.deepEqual(await files(), [], 'no store file after the refusal');
        await writeFile(db, '');
        await refused(undefined, 'emptied (0 bytes)');
        assert.deepEqual(await files(), ['tokend.db']);
        assert.equal((await stat(db)).size, 0, 'the emptied file is left empty');
        await rm(db);
        await sqlite(db, 'CREATE TABLE unrelated (a TEXT)');
        await refused(undefined, 'a SQLite file without tokend tables');
        assert.equal((await sqlite(db, "SELECT group_concat(name) FROM sqlite_master WHERE type = 'table'")).trim(), 'unrelated', 'no migration applied');
      } else {
        const empty = await createPgDatabase();
        await refused(empty, 'an empty database');
        const tables = await psql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'", empty);
        assert.equal(tables.trim(), '0', 'no migration applied');
      }
    });
  });
}
