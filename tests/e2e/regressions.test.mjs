// regressions.test.mjs: defects found in review, each pinned by the request
// that triggered it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { api, backends, request, startTokend, stopAndScan, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

for (const backend of backends()) {
  describe(`regressions (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend });
    });
    after(() => stopAndScan(t));

    it('a 64-byte token name ending in a multibyte character does not take the node down', async () => {
      const name = `${'a'.repeat(62)}é`; // 64 bytes in UTF-8
      assert.equal(Buffer.byteLength(name), 64);
      const c = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name, role: 'viewer' } });
      assert.equal(c.status, 201, c.text);
      const w = await request(t, '/v1/whoami', { token: c.json.token });
      assert.equal(w.status, 200, w.text);
      assert.equal(w.json.name, name);
      assert.equal((await request(t, '/health')).status, 200);
    });

    it('a token pasted into a path parameter is not written to the access log', async () => {
      const c = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'pasted' } });
      assert.equal(c.status, 201);
      const r = await api(t, `/v1/operator-tokens/${c.json.token}`, { method: 'DELETE' });
      assert.equal(r.status, 404);
      const un = await request(t, `/v1/operator-tokens/${c.json.token}`, { method: 'DELETE' });
      assert.equal(un.status, 401);
      // the access line is written when the response is done: wait for both
      await waitFor(() => (t.stderr().match(/"route":"\/v1\/operator-tokens\/\{id\}"/g) || []).length >= 2, {
        message: 'two access-log lines for DELETE /v1/operator-tokens/{id}',
      });
      assert.ok(!t.stderr().includes(c.json.token), 'the token is in the log');
    });

    it('node-wide keyring operations refuse a token that is not an admin', async () => {
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'op', role: 'operator' } });
      assert.equal(v.status, 201);
      for (const p of ['/v1/sys/seal', '/v1/sys/rotate', '/v1/sys/rewrap']) {
        const r = await request(t, p, { method: 'POST', token: v.json.token });
        assert.equal(r.status, 403, `${p}: ${r.text}`);
      }
      assert.equal((await api(t, '/v1/whoami')).status, 200, 'still unsealed');
    });
  });
}

describe('two nodes, one initialized through the other (sqlite file shared)', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('a node started before init learns of it and can be unsealed without a restart', async () => {
    const a = await startTokend({ backend: 'sqlite', dev: false });
    const b = await startTokend({ backend: 'sqlite', dev: false, store: `sqlite:${a.dataDir}/tokend.db` });
    try {
      const init = await request(a, '/v1/sys/init', { method: 'POST', json: { shares: 3, threshold: 2 } });
      assert.equal(init.status, 200, init.text);
      const st = await request(b, '/v1/sys/seal-status');
      assert.equal(st.json.initialized, true);
      assert.equal(st.json.sealed, true);
      let nonce;
      for (const s of init.json.shares.slice(0, 2)) {
        const r = await request(b, '/v1/sys/unseal', { method: 'POST', json: nonce ? { share: s, nonce } : { share: s } });
        assert.equal(r.status, 200, r.text);
        nonce = nonce || r.json.nonce;
      }
      assert.equal((await request(b, '/v1/whoami', { token: init.json.root_token })).status, 200);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
