// doctor.test.mjs: `tokend doctor` against real nodes: a healthy dev node,
// an uninitialized and a sealed node, an unreachable address, a broken event
// chain, a node without a token, the --json shape, GET /v1/sys/doctor, and
// (PostgreSQL) a second node on the same store.
import assert from 'node:assert/strict';
import { chmod, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { backends, createPgDatabase, createTenant, freePort, freshDir, request, runCli, startTokend, stopAndScan, storeSql, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const STATUSES = new Set(['ok', 'info', 'skip', 'warn', 'fail']);

function findings(stdout) {
  const list = JSON.parse(stdout);
  assert.ok(Array.isArray(list), 'doctor --json prints an array');
  for (const f of list) {
    assert.deepEqual(Object.keys(f).sort(), ['check', 'message', 'next_step', 'status']);
    assert.equal(typeof f.check, 'string');
    assert.ok(STATUSES.has(f.status), `status ${f.status}`);
    assert.equal(typeof f.message, 'string');
    assert.ok(f.next_step === null || typeof f.next_step === 'string');
  }
  return list;
}

const byCheck = (list, check) => list.find((f) => f.check === check);

for (const backend of backends()) {
  describe(`tokend doctor (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend });
    });
    after(() => stopAndScan(t));

    it('a healthy dev node: nothing fails, exit 0, every check ok but the dev-mode warning', async () => {
      const r = await runCli(['doctor'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token } });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.doesNotMatch(r.stdout, /\x1b\[/, 'no colour codes when not a terminal');
      assert.doesNotMatch(r.stdout, /^fail/m);
      for (const c of ['reachable', 'store', 'schema', 'keyring', 'clock', 'unseal-key', 'events', 'refusals'])
        assert.match(r.stdout, new RegExp(`^ok +${c} `, 'm'), `${c} ok:\n${r.stdout}`);
      assert.match(r.stdout, /^warn +dev +Dev mode is on: the unseal key is on disk at .*unseal\.key/m);
      assert.doesNotMatch(r.stdout, new RegExp(t.token));
    });

    it('an unseal key file made readable by others after start is a warning with the chmod', async () => {
      const key = path.join(t.dataDir, 'unseal.key');
      await chmod(key, 0o644);
      try {
        const r = await runCli(['doctor', '--json'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token } });
        assert.equal(r.code, 0, r.stdout + r.stderr);
        const f = byCheck(findings(r.stdout), 'unseal-key');
        assert.equal(f.status, 'warn');
        assert.match(f.message, /has mode 0644: others can read it\.$/);
        assert.equal(f.next_step, `chmod 600 ${key}`);
      } finally {
        await chmod(key, 0o600);
      }
    });

    it('--json: an array of {check, status, message, next_step}', async () => {
      const r = await runCli(['doctor', '--json'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token } });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const list = findings(r.stdout);
      assert.equal(byCheck(list, 'keyring').status, 'ok');
      assert.equal(byCheck(list, 'events').status, 'ok');
      const dev = byCheck(list, 'dev');
      assert.equal(dev.status, 'warn');
      assert.match(dev.next_step, /operator init/);
      assert.equal(byCheck(list, 'clock').status, 'ok');
      assert.equal(list.filter((f) => f.status === 'fail').length, 0);
    });

    it('without a token: the unauthenticated checks run, and it says which need one', async () => {
      const r = await runCli(['doctor', '--json'], { env: { TOKEND_ADDR: t.url } });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const list = findings(r.stdout);
      assert.equal(byCheck(list, 'reachable').status, 'ok');
      assert.equal(byCheck(list, 'keyring').status, 'ok');
      const tok = byCheck(list, 'token');
      assert.equal(tok.status, 'skip');
      assert.match(tok.message, /No token: .*event chain/);
      assert.match(tok.next_step, /TOKEND_TOKEN/);
      assert.equal(byCheck(list, 'events'), undefined);
    });

    it('GET /v1/sys/doctor: the node facts, for an admin of the default tenant only', async () => {
      const r = await request(t, '/v1/sys/doctor', { token: t.token });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.dev, true);
      assert.equal(r.json.store, backend);
      assert.equal(typeof r.json.store_time_ms, 'number');
      assert.ok(Math.abs(r.json.node_time_ms - r.json.store_time_ms) < 60000);
      assert.equal(r.json.schema_version, r.json.schema_latest);
      assert.equal(r.json.unseal_key_file.exists, true);
      assert.equal(r.json.unseal_key_file.mode, '0600');
      assert.equal(r.json.unseal_key_file.private, true);
      const other = await createTenant(t);
      const no = await request(t, '/v1/sys/doctor', { token: other.token });
      assert.equal(no.status, 403, no.text);
      assert.equal((await request(t, '/v1/sys/doctor')).status, 401);
      // doctor with that tenant's admin: the node facts are skipped, its own chain checked
      const d = await runCli(['doctor', '--json'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: other.token } });
      assert.equal(d.code, 0, d.stdout + d.stderr);
      const list = findings(d.stdout);
      assert.equal(byCheck(list, 'node').status, 'skip');
      assert.match(byCheck(list, 'node').message, /admin token of the default tenant/);
      assert.equal(byCheck(list, 'events').status, 'ok');
    });

    it('refused requests in the last hour are a hint', async () => {
      const bad = await request(t, '/v1/whoami', { auth: 'Bearer tko_nope', from: '127.0.4.1' });
      assert.equal(bad.status, 401);
      const r = await runCli(['doctor', '--json'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token } });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const f = byCheck(findings(r.stdout), 'refusals');
      assert.equal(f.status, 'info');
      assert.match(f.message, /^\d+ refused requests in the last hour \(\d+ rate-limited\)\.$/);
    });

    it('a broken event chain fails naming the seq', async () => {
      await storeSql(t, "UPDATE events SET message = 'edited behind tokend' WHERE seq = 1");
      const r = await runCli(['doctor'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token } });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /^fail +events +The event chain is broken at seq 1\b/m);
      assert.match(r.stdout, /-> 'tokend events verify --json'/);
    });

    it('a sealed node fails naming unseal, exit 1', async () => {
      const s = await request(t, '/v1/sys/seal', { method: 'POST', json: {}, auth: `Bearer ${t.token}` });
      assert.equal(s.status, 200, JSON.stringify(s.json));
      const r = await runCli(['doctor', '--json'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token } });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const list = findings(r.stdout);
      const k = byCheck(list, 'keyring');
      assert.equal(k.status, 'fail');
      assert.match(k.message, /sealed: 0 of 1 unseal shares/);
      assert.match(k.next_step, /tokend operator unseal/);
      assert.equal(byCheck(list, 'token').status, 'skip');
    });
  });

  describe(`tokend doctor on an uninitialized node (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend, dev: false });
    });
    after(async () => {
      await t?.stop();
    });

    it('fails naming operator init, exit 1', async () => {
      const r = await runCli(['doctor'], { env: { TOKEND_ADDR: t.url } });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /^fail +keyring +The keyring is not initialized\./m);
      assert.match(r.stdout, /-> run 'tokend operator init'/);
    });
  });
}

describe('tokend doctor on an unreachable address', () => {
  it('exit 3 with the sentence and the next step', async () => {
    const port = await freePort();
    const addr = `http://127.0.0.1:${port}`;
    const r = await runCli(['doctor'], { env: { TOKEND_ADDR: addr } });
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^fail +reachable +tokend does not answer at ${addr}: .+\\.$`, 'm'));
    assert.match(r.stdout, /-> is tokend running\? .*TOKEND_ADDR/);
    const j = await runCli(['doctor', '--json'], { env: { TOKEND_ADDR: addr } });
    assert.equal(j.code, 3);
    const list = findings(j.stdout);
    assert.equal(list.length, 1);
    assert.equal(list[0].check, 'reachable');
    assert.equal(list[0].status, 'fail');
  });
});

const hasPg = backends().includes('postgres');
describe('tokend doctor names the other nodes on the store (postgres)', { timeout: SUITE_TIMEOUT_MS, skip: hasPg ? false : 'needs TOKEND_TEST_PG (tests/with-postgres.sh)' }, () => {
  let a;
  let b;
  before(async () => {
    const store = await createPgDatabase();
    a = await startTokend({ backend: 'postgres', store, args: ['--node-name', 'doctor-a'] });
    const dir = await freshDir('doctor-b');
    await copyFile(path.join(a.dataDir, 'unseal.key'), path.join(dir, 'unseal.key'));
    b = await startTokend({ backend: 'postgres', store, dataDir: dir, args: ['--node-name', 'doctor-b'], allowNoRootToken: true });
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('node a sees node b started in the last hour, and not itself', async () => {
    const r = await runCli(['doctor', '--json'], { env: { TOKEND_ADDR: a.url, TOKEND_TOKEN: a.token } });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const f = byCheck(findings(r.stdout), 'nodes');
    assert.equal(f.status, 'info');
    assert.equal(f.message, 'Other nodes started on this store in the last hour: doctor-b.');
  });
});
