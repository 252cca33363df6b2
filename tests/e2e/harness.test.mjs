// harness.test.mjs: the e2e library's own tests. The secret scan
// (lib/secrets.mjs) finds a secret planted in each place it looks (a file
// of the data dir, the store, the logs, the events), in clear and encoded,
// and passes on a clean node; lib/tokend.mjs fills seenSecrets() by itself.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { scanForSecrets, secretCore, secretForms } from './lib/secrets.mjs';
import { api, assertNoSecretIn, backends, createTenant, request, runCli, seenSecrets, startTokend, stopAndScan, storeSql, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** A string shaped like an issued secret (the checksum is not checked here). */
function fakeToken(kind = 'tko') {
  let s = `${kind}_`;
  for (const b of randomBytes(36)) s += B62[b % 62];
  return s;
}

describe('secret forms', () => {
  it('an issued secret is searched by its random part, a share by its secret part', () => {
    const t = fakeToken();
    assert.equal(secretCore(t), t.slice(4));
    const share = `tks1-3-${randomBytes(32).toString('base64url').slice(0, 43)}-00a1b2`;
    assert.equal(secretCore(share), share.slice(7, 50));
    assert.equal(secretCore('plain-secret-value'), 'plain-secret-value');
  });

  it('every encoded form of a secret embedded at any offset is among the needles', () => {
    const s = fakeToken();
    const needles = secretForms(s).map((f) => f.needle);
    const core = Buffer.from(secretCore(s));
    const hits = (text) => needles.some((n) => Buffer.from(text, 'latin1').includes(n));
    for (let pad = 0; pad < 6; pad++) {
      const blob = Buffer.concat([randomBytes(pad), core, randomBytes(pad + 1)]);
      assert.ok(hits(blob.toString('base64')), `base64 at offset ${pad}`);
      assert.ok(hits(blob.toString('base64url')), `base64url at offset ${pad}`);
      assert.ok(hits(blob.toString('hex')), 'hex');
      assert.ok(hits(blob.toString('hex').toUpperCase()), 'HEX');
    }
    const odd = 'a b/c+d=e&f?g%h';
    assert.ok(secretForms(odd).some((f) => f.form === 'url-encoded' && f.needle.toString() === encodeURIComponent(odd)));
    assert.ok(!hits(`${s.slice(0, 20)} and ${s.slice(20)}`), 'two halves are not the secret');
  });
});

for (const backend of backends()) {
  describe(`the secret scan (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend });
    });
    after(() => stopAndScan(t));

    it('lib/tokend.mjs notes the secrets the suite sees: root token, API answers, CLI output', async () => {
      assert.ok(seenSecrets({ kind: 'root' }).includes(t.token));
      const acme = await createTenant(t);
      assert.ok(seenSecrets({ kind: 'tenant-admin' }).includes(acme.token));
      const op = await request(t, '/v1/operator-tokens', { method: 'POST', token: acme.token, json: { name: 'harness', role: 'viewer' } });
      assert.equal(op.status, 201, op.text);
      assert.ok(seenSecrets().includes(op.json.token));
      const cli = await runCli(['tenants', 'create', `cli-${randomBytes(4).toString('hex')}`, '--json'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token } });
      assert.equal(cli.code, 0, cli.stderr);
      assert.ok(seenSecrets().includes(JSON.parse(cli.stdout).token));
    });

    it('a clean node passes, and the scan looked at files, the store dump, the logs and the events', async () => {
      assert.ok(seenSecrets().length >= 4);
      await assertNoSecretIn(t);
      // the root token itself is in root-token: a file the scan skips by name, and finds when told not to
      const found = await scanForSecrets(t, [t.token], { ignoreFiles: [], dump: false, logs: false, events: false });
      assert.deepEqual(
        found.map((f) => f.where),
        [`file ${path.join(t.dataDir, 'root-token')}`],
      );
    });

    it('a secret planted in a data dir file is found, in clear and in each encoded form', async () => {
      const s = fakeToken('tkc');
      const core = Buffer.from(secretCore(s));
      const forms = {
        clear: core,
        base64: Buffer.from(Buffer.concat([Buffer.from('x'), core]).toString('base64')),
        base64url: Buffer.from(Buffer.concat([Buffer.from('yz'), core]).toString('base64url')),
        hex: Buffer.from(core.toString('hex')),
        'url-encoded': Buffer.from(encodeURIComponent(`${s}/é`)),
      };
      for (const [name, data] of Object.entries(forms)) {
        const file = path.join(t.dataDir, `planted-${name}`);
        await writeFile(file, Buffer.concat([randomBytes(50), data, randomBytes(50)]));
        const found = await scanForSecrets(t, [s], { dump: false, logs: false, events: false });
        assert.ok(
          found.some((f) => f.where === `file ${file}`),
          `${name}: ${JSON.stringify(found)}`,
        );
        await writeFile(file, 'nothing here');
      }
      const odd = 'p@ss w0rd/with+odd=chars&more';
      await writeFile(path.join(t.dataDir, 'planted-odd'), `x=${encodeURIComponent(odd)}&y=1`);
      const found = await scanForSecrets(t, [odd], { dump: false, logs: false, events: false });
      assert.deepEqual(
        found.map((f) => f.form),
        ['url-encoded'],
      );
      await writeFile(path.join(t.dataDir, 'planted-odd'), 'nothing here');
    });

    it('a secret planted in the store is found in the store dump (and for SQLite in the database files)', async () => {
      const s = fakeToken('tkr');
      await storeSql(t, `CREATE TABLE planted_secret (v TEXT); INSERT INTO planted_secret VALUES ('${s}')`);
      const found = await scanForSecrets(t, [s], { logs: false, events: false });
      const where = found.map((f) => f.where);
      assert.ok(
        where.some((w) => w.startsWith('store dump') || w.startsWith('store table')),
        JSON.stringify(where),
      );
      if (backend === 'sqlite')
        assert.ok(
          where.some((w) => /tokend\.db(-wal)?$/.test(w)),
          JSON.stringify(where),
        );
      const b = fakeToken('tkr');
      await storeSql(t, backend === 'postgres' ? `INSERT INTO planted_secret VALUES (encode('${b}'::bytea, 'base64'))` : `INSERT INTO planted_secret VALUES (hex('${b}'))`);
      const enc = await scanForSecrets(t, [b], { logs: false, events: false, files: backend === 'sqlite' });
      assert.ok(enc.length > 0 && enc.every((f) => f.form !== 'clear'), JSON.stringify(enc));
      await storeSql(t, 'DROP TABLE planted_secret');
    });

    it('a secret planted in the logs (a client request id in the access log) is found there', async () => {
      const s = fakeToken();
      const r = await api(t, '/v1/whoami', { headers: { 'x-request-id': secretCore(s) } });
      assert.equal(r.status, 200, r.text);
      // the access log line is written after the answer: wait for it
      await waitFor(async () => (await scanForSecrets(t, [s], { files: false, dump: false, events: false })).some((f) => f.where === `stderr of tokend serve (pid ${t.pid})`), {
        message: 'the planted request id found in the access log',
      });
    });

    it('a secret planted in the events (an operator token name) is found in the events read through the API', async () => {
      const s = fakeToken();
      const r = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: secretCore(s), role: 'viewer' } });
      assert.equal(r.status, 201, r.text);
      const found = await scanForSecrets(t, [s], { files: false, dump: false, logs: false });
      assert.ok(
        found.some((f) => f.where.startsWith('events of tenant ')),
        JSON.stringify(found),
      );
    });

    it('after a restart the scan still reads the earlier process logs', async () => {
      const pid = t.pid;
      const r = await t.stop();
      assert.equal(r.code, 0);
      t = await startTokend({ backend, dataDir: t.dataDir, store: t.store });
      const s = fakeToken();
      const found = await scanForSecrets(t, [s], { files: false, dump: false, events: false, extra: [['planted', `..${s}..`]] });
      assert.deepEqual(
        found.map((f) => f.where),
        ['planted'],
      );
      const logs = await scanForSecrets(t, ['tokend: listening on port'], { files: false, dump: false, events: false });
      assert.ok(logs.some((f) => f.where === `stdout of tokend serve (pid ${pid})`));
      assert.ok(logs.some((f) => f.where === `stdout of tokend serve (pid ${t.pid})`));
    });
  });
}
