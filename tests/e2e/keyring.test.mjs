// keyring.test.mjs: init with Shamir shares, restart sealed, unseal with
// K of N shares through the CLI, wrong and foreign shares, seal, rotate,
// auto-unseal, and a scan that no share or token is left in clear.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { BIN, api, assertNoSecretIn, backends, createPgDatabase, request, runCli, scrape, metric, seenSecrets, serveExpectingExit, startTokend, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

/** Run `tokend operator unseal -` with the share on standard input. */
function unsealFromStdin(url, share, extra = []) {
  return new Promise((resolve, reject) => {
    const p = spawn(BIN, ['operator', 'unseal', '-', ...extra], { env: { PATH: process.env.PATH, TOKEND_ADDR: url }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout: out, stderr: err }));
    p.stdin.end(`${share}\n`);
  });
}

/** Give shares as one unseal attempt (the first starts it, the others
 * carry its nonce); returns the last reply. */
async function unsealAttempt(t, shares) {
  let nonce;
  let r;
  for (const share of shares) {
    r = await request(t, '/v1/sys/unseal', { method: 'POST', json: nonce ? { share, nonce } : { share } });
    if (r.json && r.json.nonce) nonce = r.json.nonce;
  }
  return r;
}

for (const backend of backends()) {
  describe(`keyring (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let store;
    let init;
    let attemptNonce;
    const secrets = [];

    async function restart() {
      const r = await t.stop();
      assert.equal(r.code, 0);
      t = await startTokend({ backend, store, dataDir: t.dataDir, dev: false });
    }

    before(async () => {
      store = backend === 'postgres' ? await createPgDatabase() : undefined;
      t = await startTokend({ backend, store, dev: false });
    });
    after(async () => {
      if (t) {
        const r = await t.stop();
        assert.equal(r.code, 0);
      }
    });

    it('an uninitialized tokend says so and serves nothing but /health, /ready, /metrics and /v1/sys', async () => {
      assert.equal((await request(t, '/health')).status, 200);
      const ready = await request(t, '/ready');
      assert.equal(ready.status, 503);
      assert.equal(ready.json.reason, 'uninitialized');
      const ev = await request(t, '/v1/events');
      assert.equal(ev.status, 503);
      assert.equal(ev.json.error, 'sealed');
      assert.equal(ev.json.initialized, false);
      assert.match(ev.json.message, /operator init/);
      const st = await request(t, '/v1/sys/seal-status');
      assert.equal(st.status, 200);
      assert.equal(st.json.initialized, false);
    });

    it('operator init prints 5 shares and a root token once, and refuses to run twice', async () => {
      const r = await runCli(['operator', 'init', '--shares', '5', '--threshold', '3', '--json'], { env: { TOKEND_ADDR: t.url } });
      assert.equal(r.code, 0, r.stderr);
      init = JSON.parse(r.stdout);
      assert.equal(init.shares.length, 5);
      assert.equal(init.threshold, 3);
      for (const s of init.shares) assert.match(s, /^tks1-[1-5]-[A-Za-z0-9_-]{43}-[0-9a-f]{6}$/);
      assert.equal(new Set(init.shares).size, 5);
      assert.match(init.root_token, /^tko_/);
      secrets.push(...init.shares, init.root_token);
      t.token = init.root_token;
      // Unsealed right after init.
      assert.equal((await api(t, '/v1/whoami')).status, 200);
      const again = await runCli(['operator', 'init'], { env: { TOKEND_ADDR: t.url } });
      assert.equal(again.code, 1);
      assert.match(again.stderr, /already_initialized/);
      const apiAgain = await request(t, '/v1/sys/init', { method: 'POST', json: { shares: 1, threshold: 1 } });
      assert.equal(apiAgain.status, 409);
      // A refused second init does not seal the node.
      assert.equal((await api(t, '/v1/whoami')).status, 200);
    });

    it('init refuses bad counts, naming the field', async () => {
      // Already initialized answers first; bad input is checked on a fresh node below.
      const fresh = await startTokend({ backend: 'sqlite', dev: false });
      try {
        for (const [body, field] of [
          [{ shares: 0 }, 'shares'],
          [{ shares: 17 }, 'shares'],
          [{ shares: 3, threshold: 4 }, 'threshold'],
          [{ shares: 'five' }, 'shares'],
          [{ shares: 3, colour: 'red' }, 'colour'],
        ]) {
          const r = await request(fresh, '/v1/sys/init', { method: 'POST', json: body });
          assert.equal(r.status, 400, JSON.stringify(body));
          assert.equal(r.json.field, field, JSON.stringify(body));
        }
        assert.equal((await request(fresh, '/v1/sys/seal-status')).json.initialized, false, 'nothing was initialized');
      } finally {
        await fresh.stop();
      }
    });

    it('after a restart it is sealed: 503 everywhere, /ready and /metrics say so', async () => {
      await restart();
      t.token = init.root_token;
      const w = await api(t, '/v1/whoami');
      assert.equal(w.status, 503);
      assert.equal(w.json.error, 'sealed');
      assert.equal(w.json.t, 3);
      assert.equal(w.json.progress, 0);
      assert.ok(w.headers['retry-after']);
      const ready = await request(t, '/ready');
      assert.equal(ready.status, 503);
      assert.equal(ready.json.reason, 'sealed');
      assert.equal(metric(await scrape(t), 'tokend_keyring_sealed'), 1);
      const st = await runCli(['status'], { env: { TOKEND_ADDR: t.url } });
      assert.equal(st.code, 1);
      assert.match(st.stdout, /SEALED: 0 of 3/);
    });

    it('a mistyped, truncated or repeated share is refused and does not count', async () => {
      const s = init.shares[0];
      const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
      let r = await request(t, '/v1/sys/unseal', { method: 'POST', json: { share: flipped } });
      assert.equal(r.status, 400);
      assert.equal(r.json.error, 'corrupt_share');
      assert.ok(!r.text.includes(flipped), 'the share is not echoed');
      r = await request(t, '/v1/sys/unseal', { method: 'POST', json: { share: s.slice(0, -3) } });
      assert.equal(r.json.error, 'malformed_share');
      assert.equal(r.json.progress, 0);
      r = await request(t, '/v1/sys/unseal', { method: 'POST', json: { share: s } });
      assert.equal(r.status, 200);
      assert.equal(r.json.progress, 1);
      assert.match(r.json.nonce, /^[0-9a-f]{32}$/, 'the first share starts an attempt and returns its nonce');
      attemptNonce = r.json.nonce;
      r = await request(t, '/v1/sys/unseal', { method: 'POST', json: { share: s, nonce: attemptNonce } });
      assert.equal(r.json.error, 'duplicate_share');
      assert.equal(r.json.progress, 1);
      assert.deepEqual(r.json.shares_held, [1]);
    });

    it('three shares through the CLI (argument and standard input) unseal it', async () => {
      const a = await runCli(['operator', 'unseal', init.shares[2], '--nonce', attemptNonce], { env: { TOKEND_ADDR: t.url } });
      assert.equal(a.code, 0, a.stderr);
      assert.match(a.stdout, /unseal progress 2\/3/);
      const b = await unsealFromStdin(t.url, init.shares[4], ['--nonce', attemptNonce]);
      assert.equal(b.code, 0, b.stderr);
      assert.match(b.stdout, /unsealed/);
      assert.equal((await request(t, '/ready')).status, 200);
      const w = await api(t, '/v1/whoami');
      assert.equal(w.status, 200, 'the root token issued at init still authenticates');
      assert.equal(w.json.name, 'root');
      assert.equal(metric(await scrape(t), 'tokend_keyring_sealed'), 0);
    });

    it('shares of another installation reset the progress and say why', async () => {
      const other = await startTokend({ backend: 'sqlite', dev: false });
      let foreign;
      try {
        const r = await request(other, '/v1/sys/init', { method: 'POST', json: { shares: 3, threshold: 3 } });
        assert.equal(r.status, 200);
        foreign = r.json.shares;
        secrets.push(...foreign, r.json.root_token);
      } finally {
        await other.stop();
      }
      await restart();
      const r = await unsealAttempt(t, foreign);
      assert.equal(r.status, 400);
      assert.equal(r.json.error, 'wrong_shares');
      assert.equal(r.json.progress, 0);
      assert.equal(r.json.sealed, true);
      assert.equal((await unsealAttempt(t, [init.shares[1], init.shares[3], init.shares[0]])).status, 200);
      assert.equal((await request(t, '/ready')).status, 200);
      t.token = init.root_token;
      const ev = await api(t, '/v1/events?kind=keyring&action=unseal&outcome=denied');
      assert.equal(ev.status, 200);
      assert.ok(ev.json.events.some((e) => /another installation/.test(e.message)), 'the refusal is in the event log');
    });

    it('seal (admin) closes it again; rotate makes a new data key version', async () => {
      const rot = await runCli(['operator', 'rotate'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: init.root_token } });
      assert.equal(rot.code, 0, rot.stderr);
      assert.match(rot.stdout, /data key version 2 is now active/);
      assert.equal((await request(t, '/v1/sys/seal-status')).json.data_version, 2);
      const viewer = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'v', role: 'viewer' } });
      assert.equal(viewer.status, 201);
      secrets.push(viewer.json.token);
      assert.equal((await request(t, '/v1/sys/seal', { method: 'POST', token: viewer.json.token })).status, 403);
      const s = await runCli(['operator', 'seal'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: init.root_token } });
      assert.equal(s.code, 0, s.stderr);
      assert.equal((await api(t, '/v1/whoami')).status, 503);
      await unsealAttempt(t, init.shares.slice(0, 3));
      assert.equal((await api(t, '/v1/whoami')).status, 200);
      assert.equal((await request(t, '/v1/sys/seal-status')).json.data_version, 2, 'the rotation survived the seal');
    });

    it('rewrap: admin starts it (202) and seal-status follows it to done; a viewer gets 403; the CLI waits and exits 0', async () => {
      const before = await request(t, '/v1/sys/seal-status');
      assert.equal(before.json.rewrap, null, 'no rewrap ever ran');
      const viewer = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'rw-viewer', role: 'viewer' } });
      assert.equal(viewer.status, 201);
      secrets.push(viewer.json.token);
      const denied = await request(t, '/v1/sys/rewrap', { method: 'POST', token: viewer.json.token });
      assert.equal(denied.status, 403);
      // The only sealed values here: the authorization server's signing key,
      // made once the node was first unsealed (in the JWKS once made).
      for (let i = 0; i < 100 && !(await request(t, '/oauth2/jwks')).json.keys.length; i++) await new Promise((res) => setTimeout(res, 100));
      const keys = (await request(t, '/oauth2/jwks')).json.keys.length;
      assert.equal(keys, 1, 'one signing key');
      const r = await request(t, '/v1/sys/rewrap', { method: 'POST', token: init.root_token });
      assert.equal(r.status, 202, r.text);
      assert.equal(r.json.target_version, 2);
      assert.equal(r.json.total, keys);
      let st;
      for (let i = 0; i < 100; i++) {
        st = (await request(t, '/v1/sys/seal-status')).json.rewrap;
        if (st && st.state === 'done') break;
        await new Promise((res) => setTimeout(res, 100));
      }
      // re-sealed under version 2 unless it was made after the rotation
      assert.ok(st.rewrapped >= 0 && st.rewrapped <= keys, `rewrapped ${st.rewrapped}`);
      assert.deepEqual(st, { state: 'done', target_version: 2, done: keys, total: keys, rewrapped: st.rewrapped, failed: 0, first_failed_row: null });
      const cli = await runCli(['operator', 'rewrap'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: init.root_token } });
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, new RegExp(`rewrap started toward data key version 2: ${keys} value\\(s\\)`));
      assert.match(cli.stdout, /rewrap done/);
      const nowait = await runCli(['operator', 'rewrap', '--no-wait'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: init.root_token } });
      assert.ok(nowait.code === 0 || /rewrap_running/.test(nowait.stderr), nowait.stderr);
      t.token = init.root_token;
      for (let i = 0; i < 50; i++) {
        const ev = await api(t, '/v1/events?kind=keyring&action=rewrap_done');
        if (ev.json.events.length >= 2) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      const started = await api(t, '/v1/events?kind=keyring&action=rewrap_start');
      assert.ok(started.json.events.length >= 2, 'rewrap_start events');
      const done = await api(t, '/v1/events?kind=keyring&action=rewrap_done');
      assert.ok(done.json.events.length >= 2, 'rewrap_done events');
    });

    it('--auto-unseal writes a 0600 key file and the node unseals itself at start', async () => {
      const a = await startTokend({ backend: 'sqlite', dev: false });
      try {
        const r = await request(a, '/v1/sys/init', { method: 'POST', json: { shares: 3, threshold: 2, auto_unseal: true } });
        assert.equal(r.status, 200, r.text);
        secrets.push(...r.json.shares, r.json.root_token);
        const keyFile = path.join(a.dataDir, 'unseal.key');
        assert.equal(r.json.auto_unseal_file, keyFile);
        const st = await stat(keyFile);
        assert.equal(st.mode & 0o777, 0o600);
        assert.equal(st.size, 32);
        await a.stop();
        const b = await startTokend({ backend: 'sqlite', dev: false, dataDir: a.dataDir });
        try {
          assert.equal((await request(b, '/ready')).status, 200);
          assert.equal((await request(b, '/v1/whoami', { token: r.json.root_token })).status, 200);
        } finally {
          await b.stop();
        }
      } finally {
        await a.stop();
      }
    });

    it('no share, root token or issued token is left in clear in the data dir, the store or the logs', async () => {
      assert.ok(secrets.length >= 10);
      // lib/tokend.mjs saw each of them (API answers, CLI output); the scan looks for all it saw
      for (const s of secrets) assert.ok(seenSecrets().includes(s), `${s.slice(0, 8)}... noted by the harness`);
      await assertNoSecretIn(t);
    });
  });
}

describe('keyring errors at start', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('a damaged auto-unseal key file stops the start (exit 2), naming the file and what to do', async () => {
    const a = await startTokend({ backend: 'sqlite' });
    const dir = a.dataDir;
    await a.stop();
    const { writeFile } = await import('node:fs/promises');
    const keyFile = path.join(dir, 'unseal.key');
    await writeFile(keyFile, Buffer.alloc(31, 1), { mode: 0o600 });
    const r = await serveExpectingExit({ backend: 'sqlite', dataDir: dir });
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(keyFile), 'names the file');
    assert.match(r.stderr, /32 bytes/);
    assert.match(r.stderr, /move the file away/);
    // moved away as told: the node starts sealed, and says how to unseal
    const { rename } = await import('node:fs/promises');
    await rename(keyFile, `${keyFile}.bad`);
    const b = await startTokend({ backend: 'sqlite', dataDir: dir, allowNoRootToken: true });
    try {
      assert.equal((await request(b, '/ready')).json.reason, 'sealed');
      assert.match(b.stderr(), /not there: starting sealed/);
    } finally {
      await b.stop();
    }
  });

  it('a group- or world-readable key file, or a symlink, is refused at start (exit 2)', async () => {
    const a = await startTokend({ backend: 'sqlite' });
    const dir = a.dataDir;
    await a.stop();
    const { chmod, rename, symlink } = await import('node:fs/promises');
    const keyFile = path.join(dir, 'unseal.key');
    for (const mode of [0o644, 0o640]) {
      await chmod(keyFile, mode);
      const r = await serveExpectingExit({ backend: 'sqlite', dataDir: dir });
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stderr.includes(keyFile));
      assert.match(r.stderr, /chmod 600/);
    }
    await chmod(keyFile, 0o600);
    await rename(keyFile, `${keyFile}.real`);
    await symlink(`${keyFile}.real`, keyFile);
    const r = await serveExpectingExit({ backend: 'sqlite', dataDir: dir });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /symbolic link/);
  });
});
