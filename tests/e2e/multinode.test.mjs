// multinode.test.mjs: two tokend processes on one PostgreSQL database serve
// the same operator tokens, and their events form one gapless sequence.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { allEvents, api, backends, createPgDatabase, freshDir, request, startTokend, stopAndScan, uniqueId, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const hasPg = backends().includes('postgres');

describe('two nodes on one PostgreSQL database (postgres)', { timeout: SUITE_TIMEOUT_MS, skip: hasPg ? false : 'needs TOKEND_TEST_PG (tests/with-postgres.sh)' }, () => {
  let a;
  let b;
  before(async () => {
    const store = await createPgDatabase();
    a = await startTokend({ backend: 'postgres', store, args: ['--node-name', 'node-a'] });
    // The second node shares the store (and so the keyring), not the data
    // dir; it unseals with its own copy of the auto-unseal key file.
    const dir = await freshDir('node-b');
    await copyFile(path.join(a.dataDir, 'unseal.key'), path.join(dir, 'unseal.key'));
    b = await startTokend({ backend: 'postgres', store, dataDir: dir, args: ['--node-name', 'node-b'], allowNoRootToken: true });
    assert.equal(b.token, null, 'the second node made no root token of its own');
    b.token = a.token;
  });
  after(async () => {
    await Promise.all([stopAndScan(a), stopAndScan(b)]);
  });

  it('both nodes serve the same operator token; a revocation on one holds on the other', async () => {
    const wa = await api(a, '/v1/whoami');
    const wb = await api(b, '/v1/whoami');
    assert.equal(wa.status, 200, wa.text);
    assert.equal(wb.status, 200, wb.text);
    assert.deepEqual(wa.json, wb.json);
    assert.equal((await request(a, '/ready')).json.node, 'node-a');
    assert.equal((await request(b, '/ready')).json.node, 'node-b');

    const c = await api(a, '/v1/operator-tokens', { method: 'POST', json: { name: 'shared' } });
    assert.equal(c.status, 201, c.text);
    assert.equal((await request(b, '/v1/whoami', { token: c.json.token })).json.name, 'shared');
    assert.equal((await api(b, `/v1/operator-tokens/${c.json.id}`, { method: 'DELETE' })).status, 200);
    const r = await request(a, '/v1/whoami', { token: c.json.token });
    assert.equal(r.status, 401);
    assert.equal(r.json.reason, 'revoked');
  });

  it('200 concurrent failed authentications on both nodes give unique, gapless event seqs', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => uniqueId(`mn${i}`));
    const res = await Promise.all(
      // each from its own loopback address: repeats from one address are coalesced
      ids.map((rid, i) =>
        request(i % 2 ? b : a, '/v1/events', { auth: `Bearer tko_${'x'.repeat(i % 7)}`, headers: { 'x-request-id': rid }, from: `127.0.1.${1 + i}` }),
      ),
    );
    for (const r of res) assert.equal(r.status, 401, r.text);
    // the trace id of each event is tokend's own id for the request
    for (const [i, r] of res.entries()) ids[i] = r.json.request_id;

    const evs = await allEvents(a, '', { limit: 50 });
    const seqs = evs.map((e) => e.seq);
    assert.equal(new Set(seqs).size, seqs.length, 'no seq twice');
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => seqs.length - i), 'newest first, gapless down to 1');
    assert.equal(new Set(evs.map((e) => e.id)).size, evs.length, 'no event twice');

    const byTrace = new Map();
    for (const e of evs) if (e.kind === 'operator' && e.action === 'authenticate') byTrace.set(e.trace_id, (byTrace.get(e.trace_id) || []).concat(e));
    for (const [i, rid] of ids.entries()) {
      const got = byTrace.get(rid) || [];
      assert.equal(got.length, 1, `one event for request ${rid}`);
      assert.equal(got[0].node, i % 2 ? 'node-b' : 'node-a');
      assert.equal(got[0].outcome, 'denied');
    }
    // Both nodes see the same log.
    const fromB = await allEvents(b, '', { limit: 1000 });
    assert.deepEqual(fromB.map((e) => e.id), evs.map((e) => e.id));
    assert.deepEqual(fromB.map((e) => e.hash), evs.map((e) => e.hash));
  });

  it('the chain verifies on both nodes: each node checks the MACs of the other (one keyring)', async () => {
    await request(b, '/v1/whoami', { auth: 'Bearer from-b' });
    await request(a, '/v1/whoami', { auth: 'Bearer from-a' });
    // Refusals are posted to each node's event writer: a read on a node
    // waits for what that node queued, not for the other node's queue.
    await api(b, '/v1/events?limit=1');
    await api(a, '/v1/events?limit=1');
    const va = (await api(a, '/v1/events/verify')).json;
    const vb = (await api(b, '/v1/events/verify')).json;
    for (const v of [va, vb]) {
      assert.equal(v.valid, true, v.error);
      assert.equal(v.macs_checked, true);
      assert.equal(v.attested_seq, v.head_seq);
    }
    assert.equal(va.head_hash, vb.head_hash);
    const evs = await allEvents(a, '', { limit: 1000 });
    assert.ok(evs.some((e) => e.node === 'node-b' && e.mac), 'node-b wrote keyed events');
    assert.ok(evs.some((e) => e.node === 'node-a' && e.mac), 'node-a wrote keyed events');
  });
});
