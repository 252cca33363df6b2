// hardening_keyring.test.mjs: issue 13 in the keyring, end to end -- unseal
// attempts bound to a nonce that the CLI keeps, an explicit reset, the share
// numbers held, failed unseal attempts rate limited per address (#6), and
// init/unseal/seal/rotate that do not happen without their event (#18).
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { api, backends, seenSecrets, createPgDatabase, request, runCli, startTokend, stopAndScan, storeSql, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** A share anyone can make: number x, random bytes, the public checksum. */
function forgeShare(x) {
  const buf = Buffer.alloc(33);
  buf[0] = x;
  for (let i = 1; i < 33; i++) buf[i] = Math.floor(Math.random() * 256);
  const crc = (crc32(buf) & 0xffffff).toString(16).padStart(6, '0');
  return `tks1-${x}-${buf.subarray(1).toString('base64url')}-${crc}`;
}

const unseal = (t, json) => request(t, '/v1/sys/unseal', { method: 'POST', json });

async function unsealAttempt(t, shares) {
  let nonce;
  let r;
  for (const share of shares) {
    r = await unseal(t, nonce ? { share, nonce } : { share });
    if (r.json && r.json.nonce) nonce = r.json.nonce;
  }
  return r;
}

async function eventsUnwritable(t, on) {
  if (t.backend === 'postgres') {
    if (on) {
      await storeSql(t, "CREATE OR REPLACE FUNCTION no_events() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'events are unwritable'; END $$ LANGUAGE plpgsql");
      await storeSql(t, 'CREATE TRIGGER no_events BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION no_events()');
    } else {
      await storeSql(t, 'DROP TRIGGER no_events ON events');
    }
  } else {
    await storeSql(t, on ? "CREATE TRIGGER no_events BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'events are unwritable'); END;" : 'DROP TRIGGER no_events;');
  }
}

for (const backend of backends()) {
  describe(`keyring hardening (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let store;
    let init;
    const secrets = [];

    async function restart() {
      const r = await t.stop();
      assert.equal(r.code, 0);
      t = await startTokend({ backend, store, dataDir: t.dataDir, dev: false });
      t.token = init.root_token;
    }

    before(async () => {
      store = backend === 'postgres' ? await createPgDatabase() : undefined;
      t = await startTokend({ backend, store, dev: false });
      const r = await request(t, '/v1/sys/init', { method: 'POST', json: { shares: 5, threshold: 3 } });
      assert.equal(r.status, 200, r.text);
      init = r.json;
      secrets.push(...init.shares, init.root_token);
      t.token = init.root_token;
    });
    after(async () => {
      // the secret scan: no share or token in clear in the data dir, the store, the logs or the events
      await stopAndScan(t);
      for (const x of secrets) assert.ok(seenSecrets().includes(x), 'the harness noted every share and root token');
    });

    it('a stranger cannot disturb an attempt: shares without its nonce are refused, progress stays', async () => {
      await restart();
      const first = await unseal(t, { share: init.shares[3] });
      assert.equal(first.status, 200, first.text);
      const nonce = first.json.nonce;
      assert.match(nonce, /^[0-9a-f]{32}$/);
      assert.deepEqual(first.json.shares_held, [4]);
      // forged shares (valid checksums) without the nonce, or with another one
      for (const json of [{ share: forgeShare(1) }, { share: forgeShare(4) }, { share: forgeShare(2), nonce: 'f'.repeat(32) }, { share: init.shares[0] }]) {
        const r = await unseal(t, json);
        assert.equal(r.status, 409, r.text);
        assert.equal(r.json.error, 'unseal_nonce_mismatch');
        assert.equal(r.json.progress, 1);
        assert.equal(r.json.nonce, undefined, 'the nonce is never handed to another caller');
      }
      const st = await request(t, '/v1/sys/seal-status');
      assert.deepEqual(st.json.shares_held, [4]);
      assert.equal(st.json.nonce, undefined, 'seal-status does not show the nonce');
      // the operator goes on with the nonce
      let r = await unseal(t, { share: init.shares[0], nonce });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json.shares_held, [1, 4]);
      r = await unseal(t, { share: init.shares[1], nonce });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.sealed, false);
      assert.equal((await api(t, '/v1/whoami')).status, 200);
      // the four refusals from one address and for one reason: one event (repeats coalesced)
      const ev = await api(t, '/v1/events?kind=keyring&action=unseal&outcome=denied&limit=1000');
      assert.equal(ev.status, 200);
      const mismatch = ev.json.events.filter((e) => /unseal attempt is in progress/.test(e.message));
      assert.equal(mismatch.length, 1, JSON.stringify(ev.json.events.map((e) => e.message)));
      assert.equal(mismatch[0].detail.reason, 'unseal_nonce_mismatch');
    });

    it('reset ends an attempt (pre-filled by a stranger), and the operator starts again', async () => {
      await restart();
      const fake = await unseal(t, { share: forgeShare(2) });
      assert.equal(fake.status, 200);
      let r = await unseal(t, { share: init.shares[1] });
      assert.equal(r.json.error, 'unseal_nonce_mismatch');
      r = await unseal(t, { reset: true });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.reset, true);
      assert.equal(r.json.progress, 0);
      assert.deepEqual(r.json.shares_held, []);
      r = await unseal(t, { reset: true, share: init.shares[1] });
      assert.equal(r.status, 400);
      r = await unseal(t, { reset: 'yes' });
      assert.equal(r.status, 400);
      assert.equal(r.json.field, 'reset');
      // the old nonce no longer counts
      r = await unseal(t, { share: init.shares[1], nonce: fake.json.nonce });
      assert.equal(r.json.error, 'unseal_nonce_mismatch');
      assert.equal(r.json.progress, 0);
      r = await unsealAttempt(t, init.shares.slice(1, 4));
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.sealed, false);
    });

    it('the CLI keeps the nonce between invocations (0600 file), resets, and recovers from a stale one', async () => {
      await restart();
      const run = await mkdtemp(path.join(os.tmpdir(), 'tokend-xdg-'));
      const env = { TOKEND_ADDR: t.url, XDG_RUNTIME_DIR: run };
      let a = await runCli(['operator', 'unseal', init.shares[0]], { env });
      assert.equal(a.code, 0, a.stderr);
      assert.match(a.stdout, /unseal progress 1\/3/);
      const m = /attempt nonce: ([0-9a-f]{32})/.exec(a.stdout);
      assert.ok(m, a.stdout);
      const files = await readdir(path.join(run, 'tokend'));
      assert.equal(files.length, 1);
      const file = path.join(run, 'tokend', files[0]);
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.equal((await stat(path.join(run, 'tokend'))).mode & 0o777, 0o700);
      assert.equal((await readFile(file, 'utf8')).trim(), m[1]);
      a = await runCli(['operator', 'unseal', init.shares[2]], { env });
      assert.equal(a.code, 0, a.stderr);
      assert.match(a.stdout, /unseal progress 2\/3/);
      // --reset ends it and forgets the file
      a = await runCli(['operator', 'unseal', '--reset'], { env });
      assert.equal(a.code, 0, a.stderr);
      assert.match(a.stdout, /attempt ended/);
      assert.deepEqual(await readdir(path.join(run, 'tokend')), []);
      // a kept nonce of an attempt reset by someone else: the CLI says so and starts anew
      a = await runCli(['operator', 'unseal', init.shares[0]], { env });
      assert.equal(a.code, 0, a.stderr);
      assert.equal((await unseal(t, { reset: true })).json.reset, true);
      a = await runCli(['operator', 'unseal', init.shares[1]], { env });
      assert.equal(a.code, 0, a.stderr);
      assert.match(a.stderr, /completed or reset; this share starts a new one/);
      assert.match(a.stdout, /unseal progress 1\/3/);
      // another operator (no nonce) is told what to do
      const other = await mkdtemp(path.join(os.tmpdir(), 'tokend-xdg-'));
      const b = await runCli(['operator', 'unseal', init.shares[3]], { env: { TOKEND_ADDR: t.url, XDG_RUNTIME_DIR: other } });
      assert.equal(b.code, 1);
      assert.match(b.stderr, /unseal_nonce_mismatch/);
      assert.match(b.stderr, /--nonce/);
      assert.match(b.stderr, /--reset/);
      const st = await runCli(['operator', 'status'], { env });
      assert.match(st.stdout, /shares held\s+2/);
      // the same account finishes; the file goes
      a = await runCli(['operator', 'unseal', init.shares[3]], { env });
      assert.equal(a.code, 0, a.stderr);
      a = await runCli(['operator', 'unseal', init.shares[4]], { env });
      assert.equal(a.code, 0, a.stderr);
      assert.match(a.stdout, /unsealed/);
      assert.deepEqual(await readdir(path.join(run, 'tokend')), []);
    });

    it('init, unseal and rotate do not happen without their event; seal seals and says the event is missing', async () => {
      // rotate: refused, version unchanged
      await eventsUnwritable(t, true);
      try {
        let r = await request(t, '/v1/sys/rotate', { method: 'POST', token: init.root_token });
        assert.equal(r.status, 503, r.text);
        assert.equal(r.json.error, 'event_unrecorded');
        const before = (await request(t, '/v1/sys/seal-status')).json.data_version;
        assert.equal(before, 1);
        // seal: sealed all the same, and the reply and the CLI say the event is missing
        const s = await runCli(['operator', 'seal'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: init.root_token } });
        assert.equal(s.code, 1, s.stdout);
        assert.match(s.stderr, /event could not be recorded/);
        assert.equal((await request(t, '/v1/sys/seal-status')).json.sealed, true);
        // unseal: the last share is refused 503 and the node stays sealed
        r = await unsealAttempt(t, init.shares.slice(0, 3));
        assert.equal(r.status, 503, r.text);
        assert.equal(r.json.error, 'event_unrecorded');
        assert.equal(r.json.sealed, true);
        assert.equal((await api(t, '/v1/whoami')).status, 503);
      } finally {
        await eventsUnwritable(t, false);
      }
      let r = await unsealAttempt(t, init.shares.slice(0, 3));
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.sealed, false);
      r = await request(t, '/v1/sys/rotate', { method: 'POST', token: init.root_token });
      assert.equal(r.status, 200, r.text);
      const ev = await api(t, '/v1/events?kind=keyring&action=rotate&outcome=ok');
      assert.equal(ev.json.events.length, 1);
    });

    it('a keyring row that lies (threshold 200) keeps the node sealed and says keyring_corrupt; forged shares do not crash it', async () => {
      await storeSql(t, 'UPDATE keyring SET threshold = 200 WHERE id = 1');
      try {
        await restart();
        const st = await request(t, '/v1/sys/seal-status');
        assert.equal(st.json.sealed, true);
        assert.equal(st.json.keyring_corrupt, true);
        for (let x = 1; x <= 20; x++) {
          const r = await unseal(t, { share: forgeShare(x) });
          assert.equal(r.status, 500, r.text);
          assert.equal(r.json.error, 'keyring_corrupt');
        }
        const w = await api(t, '/v1/whoami');
        assert.equal(w.status, 503);
        assert.match(w.json.message, /damaged/);
        assert.match(t.stderr(), /keyring_corrupt|damaged or was altered/);
      } finally {
        await storeSql(t, 'UPDATE keyring SET threshold = 3 WHERE id = 1');
      }
      // the row is good again: the running node follows and takes shares
      const r = await unsealAttempt(t, init.shares.slice(0, 3));
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.sealed, false);
    });

    it('init does not happen without its event: nothing initialized, and a retry works', async () => {
      const fresh = await startTokend({ backend, dev: false, store: backend === 'postgres' ? await createPgDatabase() : undefined });
      try {
        await eventsUnwritable(fresh, true);
        let r = await request(fresh, '/v1/sys/init', { method: 'POST', json: { shares: 3, threshold: 2 } });
        assert.equal(r.status, 503, r.text);
        assert.equal(r.json.error, 'event_unrecorded');
        assert.equal(r.json.shares, undefined);
        assert.equal((await request(fresh, '/v1/sys/seal-status')).json.initialized, false);
        assert.equal(String(await storeSql(fresh, 'SELECT COUNT(*) FROM keyring')).trim(), '0');
        await eventsUnwritable(fresh, false);
        r = await request(fresh, '/v1/sys/init', { method: 'POST', json: { shares: 3, threshold: 2 } });
        assert.equal(r.status, 200, r.text);
        secrets.push(...r.json.shares, r.json.root_token);
      } finally {
        await fresh.stop();
      }
    });
  });
}

describe('failed unseal attempts are rate limited per address', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('past 10 failures in a minute: 429 rate_limited with Retry-After, even for a good share', async () => {
    const t = await startTokend({ backend: 'sqlite', dev: false });
    try {
      const init = await request(t, '/v1/sys/init', { method: 'POST', json: { shares: 3, threshold: 2 } });
      assert.equal(init.status, 200);
      await t.stop();
      const b = await startTokend({ backend: 'sqlite', dev: false, dataDir: t.dataDir });
      try {
        for (let i = 0; i < 10; i++) {
          const r = await unseal(b, { share: `tks1-1-${'A'.repeat(43)}-000000` });
          assert.equal(r.status, 400, r.text);
        }
        const limited = await unseal(b, { share: init.json.shares[0] });
        assert.equal(limited.status, 429, limited.text);
        assert.equal(limited.json.error, 'rate_limited');
        const ra = Number(limited.headers['retry-after']);
        assert.ok(ra >= 1 && ra <= 60, `Retry-After ${limited.headers['retry-after']}`);
        assert.equal((await request(b, '/v1/sys/seal-status')).json.progress, 0, 'the limited share did not count');
        // seal-status and the rest of the node are not limited
        assert.equal((await request(b, '/health')).status, 200);
      } finally {
        await b.stop();
      }
    } finally {
      await t.stop();
    }
  });
});
