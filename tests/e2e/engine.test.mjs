// engine.test.mjs: the refresh engine (issue 18 item 5) against a fake
// token endpoint that knows every refresh token it issued
// (lib/engineupstream.mjs): a connection that comes due is refreshed with
// no caller (its event, source scheduled); 500 and 429 + Retry-After leave
// it refresh_error with the backoff in detail.next_attempt_at; invalid_grant
// makes it needs_reconnect and the engine stops trying; a sealed node does
// not refresh; the metrics count it. On PostgreSQL two nodes refresh 1000
// connections due at once exactly once each, and after a kill -9 in the
// middle of refreshes the other node finishes once the leases run out,
// with no refresh token redeemed twice. Every suite ends with the secret
// scan.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { allEvents, api, backends, createPgDatabase, freshDir, metric, request, scrape, startTokend, uniqueId, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { startEngineUpstream } from './lib/engineupstream.mjs';
import { noteSecret, stopAndScan } from './lib/secrets.mjs';

const iso = (msFromNow) => new Date(Date.now() + msFromNow).toISOString();
const hasPg = backends().includes('postgres');

function clientPair() {
  const clientId = uniqueId('cid').replace(/[^A-Za-z0-9]/g, '');
  const clientSecret = `ecs-${uniqueId('s').replace(/[^A-Za-z0-9]/g, '')}${Math.random().toString(36).slice(2)}`;
  noteSecret(clientSecret, { kind: 'client_secret' });
  return { clientId, clientSecret };
}

/** A generic-oauth2 app whose token endpoint is up. */
async function makeApp(node, up, { clientId, clientSecret }) {
  const r = await request(node, '/v1/provider-apps', {
    method: 'POST',
    token: node.token,
    json: { provider: 'generic-oauth2', name: uniqueId('app').replace(/[^A-Za-z0-9]/g, ''), client_id: clientId, client_secret: clientSecret, scopes: ['read'], token_url: up.url, client_auth: 'client_secret_post' },
  });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

/** Import a connection of app whose token expires in expiresInMs; returns {conn, rt, label}. */
async function importConn(node, up, app, { expiresInMs = 60000, label = uniqueId('conn'), behave } = {}) {
  const rt = up.issue(label);
  // before the import: a connection due at once may be refreshed before
  // the import's answer reaches the test
  if (behave) up.behaveFor(rt, behave);
  const r = await request(node, '/v1/connections', {
    method: 'POST',
    token: node.token,
    json: { app_id: app.id, label, access_token: up.newAccessToken(), refresh_token: rt, expires_at: iso(expiresInMs), scopes: ['read'] },
  });
  assert.equal(r.status, 201, r.text);
  return { conn: r.json, rt, label };
}

const refreshEvents = (node, id) => allEvents(node, `kind=refresh&subject=${id}`);

for (const backend of backends()) {
  describe(`refresh engine (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let up;
    let app;

    before(async () => {
      const pair = clientPair();
      up = await startEngineUpstream(pair);
      t = await startTokend({ backend, args: ['--refresh-timeout', '5'] });
      app = await makeApp(t, up, pair);
    });
    after(async () => {
      await stopAndScan(t);
      await up?.close();
    });

    it('refreshes a connection that comes due with no caller: one event, source scheduled; the next refresh is ahead of the new expiry', async () => {
      up.behave({ kind: 'ok', rotate: true, expiresIn: 3600 });
      const before = metric(await scrape(t), 'tokend_refresh_attempts_total', { outcome: 'ok', provider: 'generic-oauth2' }) ?? 0;
      const { conn, label } = await importConn(t, up, app, { expiresInMs: 60000 });
      const evs = await waitFor(async () => {
        const e = await refreshEvents(t, conn.id);
        return e.length ? e : null;
      }, { timeoutMs: 20000, message: 'the engine to refresh the connection' });
      assert.equal(evs.length, 1, JSON.stringify(evs));
      const ev = evs[0];
      assert.equal(ev.source, 'scheduled');
      assert.equal(ev.outcome, 'ok');
      assert.equal(ev.action, 'refresh');
      assert.equal(ev.subject_type, 'connection');
      assert.equal(ev.detail.provider, 'generic-oauth2');
      assert.equal(up.presentedBy(label), 1);

      const c = (await api(t, `/v1/connections/${conn.id}`)).json;
      assert.equal(c.status, 'ok');
      assert.equal(c.version, 2);
      assert.ok(c.last_refresh_at);
      const exp = Date.parse(c.expires_at);
      const next = Date.parse(c.next_refresh_at);
      assert.ok(exp > Date.now() + 3500e3, `expires_at ${c.expires_at}: an hour from now`);
      // max(300 s, 10% of 3600 s = 360 s) ahead, minus up to 10% of that of jitter
      assert.ok(next <= exp - 360e3 + 2000 && next >= exp - 396e3 - 2000, `next_refresh_at ${c.next_refresh_at} vs expires_at ${c.expires_at}`);

      await waitFor(async () => {
        const s = await scrape(t);
        return (metric(s, 'tokend_refresh_attempts_total', { outcome: 'ok', provider: 'generic-oauth2' }) ?? 0) > before;
      }, { message: 'the attempt counted' });
      const s = await scrape(t);
      assert.ok(metric(s, 'tokend_refresh_duration_seconds_count') >= 1);
      // the status counts come from the engine's periodic count
      await waitFor(async () => (metric(await scrape(t), 'tokend_connections', { status: 'ok' }) ?? 0) >= 1, { timeoutMs: 15000, message: 'tokend_connections{status="ok"}' });
      const soonest = (await scrape(t)).filter((x) => x.name === 'tokend_connections_soonest_expiry_seconds');
      assert.equal(soonest.length, 1, 'a soonest expiry');
      assert.ok(soonest[0].value < 3600, `soonest expiry ${soonest[0].value} s`);
    });

    it('500 and 429 + Retry-After: refresh_error with the backoff in detail.next_attempt_at, and no attempt before it', async () => {
      const a = await importConn(t, up, app, { expiresInMs: 90000, behave: { kind: 'status', status: 500 } });
      const b = await importConn(t, up, app, { expiresInMs: 90000, behave: { kind: 'retry_after', retryAfter: 120 } });
      for (const [x, min] of [[a, 1000], [b, 120e3]]) {
        const ev = await waitFor(async () => (await refreshEvents(t, x.conn.id))[0], { timeoutMs: 20000, message: 'the failed attempt' });
        assert.equal(ev.source, 'scheduled');
        assert.equal(ev.outcome, 'error', JSON.stringify(ev));
        const nextAt = Date.parse(ev.detail.next_attempt_at);
        assert.ok(nextAt >= Date.parse(ev.at) + min - 1000, `next_attempt_at ${ev.detail.next_attempt_at} at least ${min} ms after ${ev.at}`);
        const c = (await api(t, `/v1/connections/${x.conn.id}`)).json;
        assert.equal(c.status, 'refresh_error');
        assert.equal(c.failure_count, 1);
        assert.equal(Date.parse(c.next_refresh_at), nextAt);
      }
      // the 429 one is not tried again before its Retry-After: a connection
      // imported later is refreshed (so the engine ran rounds) and b was not
      const c2 = await importConn(t, up, app, { expiresInMs: 60000 });
      await waitFor(async () => (await refreshEvents(t, c2.conn.id)).length === 1, { timeoutMs: 20000, message: 'a later connection refreshed' });
      assert.equal(up.presentedBy(b.label), 1, 'b tried once');
      assert.ok((metric(await scrape(t), 'tokend_refresh_attempts_total', { outcome: 'error', provider: 'generic-oauth2' }) ?? 0) >= 2);
    });

    it('invalid_grant: needs_reconnect with the reason, and the engine never tries again', async () => {
      const a = await importConn(t, up, app, { expiresInMs: 60000, behave: { kind: 'invalid_grant' } });
      const ev = await waitFor(async () => (await refreshEvents(t, a.conn.id))[0], { timeoutMs: 20000, message: 'the refused attempt' });
      assert.equal(ev.outcome, 'failed', JSON.stringify(ev));
      assert.equal(ev.detail.reason, 'invalid_grant');
      const c = (await api(t, `/v1/connections/${a.conn.id}`)).json;
      assert.equal(c.status, 'needs_reconnect');
      assert.equal(c.next_refresh_at, null);
      const l = await api(t, '/v1/connections?status=needs_reconnect');
      assert.ok(l.json.connections.some((x) => x.id === a.conn.id));
      // two later connections refreshed: the engine went round, and left a alone
      for (let i = 0; i < 2; i++) {
        const n = await importConn(t, up, app, { expiresInMs: 60000 });
        await waitFor(async () => (await refreshEvents(t, n.conn.id)).length === 1, { timeoutMs: 20000, message: 'a later connection refreshed' });
      }
      assert.equal(up.presentedBy(a.label), 1, 'one attempt only');
      assert.equal((await refreshEvents(t, a.conn.id)).length, 1);
      await waitFor(async () => (metric(await scrape(t), 'tokend_connections', { status: 'needs_reconnect' }) ?? 0) >= 1, { timeoutMs: 15000, message: 'tokend_connections{status="needs_reconnect"}' });
    });

    it('bounds: at most refresh_concurrency refreshes at once, and refresh_per_provider to one provider', async () => {
      const shared = { pending: 0, max: 0 };
      const pa = clientPair();
      const pb = clientPair();
      const ua = await startEngineUpstream({ ...pa, shared });
      const ub = await startEngineUpstream({ ...pb, shared });
      try {
        for (const u of [ua, ub]) u.behave({ kind: 'ok', rotate: true, expiresIn: 3600, delayMs: 300 });
        const n = await startTokend({ backend, args: ['--refresh-concurrency', '3', '--refresh-per-provider', '2'] });
        try {
          const appA = await makeApp(n, ua, pa);
          const r = await request(n, '/v1/provider-apps', {
            method: 'POST',
            token: n.token,
            json: { provider: 'slack', name: uniqueId('slack').replace(/[^A-Za-z0-9]/g, ''), client_id: pb.clientId, client_secret: pb.clientSecret, scopes: ['read'], token_url: ub.url, client_auth: 'client_secret_post' },
          });
          assert.equal(r.status, 201, r.text);
          const appB = r.json;
          const made = [];
          for (let i = 0; i < 8; i++) made.push(await importConn(n, ua, appA), await importConn(n, ub, appB));
          await waitFor(async () => ua.stats().redeemed + ub.stats().redeemed >= 16, { timeoutMs: 60000, message: '16 refreshes' });
          assert.ok(ua.stats().maxPending <= 2, `generic-oauth2: ${ua.stats().maxPending} at once`);
          assert.ok(ub.stats().maxPending <= 2, `slack: ${ub.stats().maxPending} at once`);
          assert.ok(shared.max <= 3, `${shared.max} at once over both`);
          assert.ok(shared.max >= 2, `concurrent at all: ${shared.max}`);
          await waitFor(async () => {
            const s = await scrape(n);
            return metric(s, 'tokend_refresh_attempts_total', { outcome: 'ok', provider: 'slack' }) === 8 &&
              metric(s, 'tokend_refresh_attempts_total', { outcome: 'ok', provider: 'generic-oauth2' }) === 8;
          }, { message: 'the attempts counted by provider' });
          for (const m of made) assert.equal((await api(n, `/v1/connections/${m.conn.id}`)).json.version, 2);
        } finally {
          await stopAndScan(n);
        }
      } finally {
        await ua.close();
        await ub.close();
      }
    });

    it('a sealed node does not refresh; unsealed (restart with the key file) it does', async () => {
      // due in about 4 s: refresh_ahead 10 s on a token that lives 15 s
      await t.stop();
      t = await startTokend({ backend, dataDir: t.dataDir, store: t.store, args: ['--refresh-timeout', '5', '--refresh-ahead', '10'] });
      const a = await importConn(t, up, app, { expiresInMs: 15000 });
      const due = Date.parse(a.conn.next_refresh_at);
      assert.ok(due > Date.now(), `not due yet: ${a.conn.next_refresh_at}`);
      const s = await api(t, '/v1/sys/seal', { method: 'POST' });
      assert.equal(s.status, 200, s.text);
      // past its due time, and several of the engine's rounds (every 2 s) later
      await waitFor(async () => Date.now() > due + 5000, { timeoutMs: 30000, message: 'the due time to pass' });
      assert.equal(up.presentedBy(a.label), 0, 'no refresh while sealed');
      await t.stop();
      t = await startTokend({ backend, dataDir: t.dataDir, store: t.store, args: ['--refresh-timeout', '5'] });
      await waitFor(async () => (await refreshEvents(t, a.conn.id)).length === 1, { timeoutMs: 20000, message: 'the refresh after unseal' });
      assert.equal(up.presentedBy(a.label), 1);
    });

    it('SIGTERM with refreshes hanging upstream: the node stops within shutdown_timeout and says what it left', async () => {
      // an upstream timeout longer than shutdown_timeout (5 s): the answers cannot come in time
      await t.stop();
      t = await startTokend({ backend, dataDir: t.dataDir, store: t.store, args: ['--refresh-timeout', '60'] });
      const made = [];
      for (let i = 0; i < 3; i++) {
        const x = await importConn(t, up, app, { expiresInMs: 60000, behave: { kind: 'hang' } });
        made.push(x);
      }
      await waitFor(async () => made.every((m) => up.presentedBy(m.label) === 1), { timeoutMs: 20000, message: 'three refreshes in flight' });
      const t0 = Date.now();
      const res = await t.stop();
      assert.equal(res.code, 0, t.stderr().slice(-3000));
      assert.ok(Date.now() - t0 < 12000, `stopped in ${Date.now() - t0} ms (shutdown_timeout 5 s)`);
      assert.match(t.stderr(), /refresh: 3 refresh\(es\) still waiting for the upstream at stop/);
      // nothing recorded, nothing redeemed: the requests went away unanswered
      t = await startTokend({ backend, dataDir: t.dataDir, store: t.store, args: ['--refresh-timeout', '5'] });
      for (const m of made) assert.equal((await refreshEvents(t, m.conn.id)).length, 0);
      assert.equal(up.stats().reused, 0);
    });
  });
}

describe('refresh engine: two nodes on one PostgreSQL (postgres)', { timeout: 300000, skip: hasPg ? false : 'needs TOKEND_TEST_PG (tests/with-postgres.sh)' }, () => {
  let store;
  let a; // engine off: imports
  let nodes = [];
  let up;
  let app;

  async function startNode(name, args = []) {
    const dir = await freshDir(name);
    await copyFile(path.join(a.dataDir, 'unseal.key'), path.join(dir, 'unseal.key'));
    const n = await startTokend({ backend: 'postgres', store, dataDir: dir, args: ['--node-name', name, ...args], allowNoRootToken: true });
    n.token = a.token;
    nodes.push(n);
    return n;
  }

  before(async () => {
    store = await createPgDatabase();
    const pair = clientPair();
    up = await startEngineUpstream(pair);
    a = await startTokend({ backend: 'postgres', store, args: ['--node-name', 'importer', '--refresh-concurrency', '0'] });
    app = await makeApp(a, up, pair);
  });
  after(async () => {
    await Promise.all([a, ...nodes].filter((n) => n.proc.exitCode === null && n.proc.signalCode === null).map((n) => stopAndScan(n)));
    await up?.close();
  });

  it('1000 connections due at once: each refreshed exactly once by one of two nodes', async () => {
    up.behave({ kind: 'ok', rotate: true, expiresIn: 3600, delayMs: 40 });
    const N = 1000;
    const made = [];
    for (let i = 0; i < N; i += 20) made.push(...(await Promise.all(Array.from({ length: Math.min(20, N - i) }, () => importConn(a, up, app, { expiresInMs: 60000 })))));
    assert.equal(up.stats().requests, 0, 'the importer does not refresh');
    const args = ['--refresh-concurrency', '16', '--refresh-timeout', '10'];
    const [b, c] = await Promise.all([startNode('node-b', args), startNode('node-c', args)]);
    await waitFor(async () => up.stats().redeemed >= N, { timeoutMs: 120000, message: `${N} refreshes` });
    // settle: nothing more comes
    const evs = await waitFor(async () => {
      const e = (await allEvents(a, 'kind=refresh')).filter((x) => made.some((m) => m.conn.id === x.subject_id));
      return e.length >= N ? e : null;
    }, { timeoutMs: 30000, message: 'every refresh event' });
    const per = new Map();
    for (const e of evs) per.set(e.subject_id, (per.get(e.subject_id) || 0) + 1);
    const twice = [...per.entries()].filter(([, n]) => n !== 1);
    assert.deepEqual(twice, [], 'one refresh event per connection');
    assert.equal(per.size, N);
    for (const e of evs) assert.equal(e.outcome, 'ok', JSON.stringify(e));
    const byNode = { 'node-b': 0, 'node-c': 0 };
    for (const e of evs) byNode[e.node] = (byNode[e.node] || 0) + 1;
    assert.equal(byNode['node-b'] + byNode['node-c'], N, JSON.stringify(byNode));
    for (const m of made) assert.equal(up.presentedBy(m.label), 1, `${m.label} presented once`);
    const st = up.stats();
    assert.equal(st.reused, 0);
    assert.equal(st.redeemed, N);
    const l = (await api(b, '/v1/connections?status=ok&limit=1000')).json.connections.filter((x) => made.some((m) => m.conn.id === x.id));
    assert.equal(l.length, N);
    for (const x of l) assert.equal(x.version, 2);
    console.log(`# refreshed by node-b ${byNode['node-b']}, node-c ${byNode['node-c']}`);
    await Promise.all([b, c].map((n) => stopAndScan(n)));
    nodes = nodes.filter((n) => n !== b && n !== c);
  });

  it('kill -9 of a node in the middle of refreshes: the other node finishes after the leases run out; no refresh token redeemed twice', async () => {
    up.behave({ kind: 'hang' });
    const N = 20;
    const made = await Promise.all(Array.from({ length: N }, () => importConn(a, up, app, { expiresInMs: 60000 })));
    const before = up.stats();
    // refresh_timeout 5 s: a lease of 15 s
    const args = ['--refresh-concurrency', '32', '--refresh-per-provider', '32', '--refresh-timeout', '5'];
    const b = await startNode('node-kill', args);
    await waitFor(async () => up.stats().pending >= N, { timeoutMs: 20000, message: `node-kill has ${N} refreshes in flight` });
    const killedAt = Date.now();
    await b.stop('SIGKILL');
    nodes = nodes.filter((n) => n !== b);
    await waitFor(async () => up.stats().pending === 0, { message: 'the hanging requests to go' });
    up.behave({ kind: 'ok', rotate: true, expiresIn: 3600 });
    const c = await startNode('node-rescue', args);
    await waitFor(async () => up.stats().redeemed - before.redeemed >= N, { timeoutMs: 60000, message: 'the other node refreshes them' });
    // the answers are in; their commits may trail them
    const evs = await waitFor(async () => {
      const e = (await allEvents(a, 'kind=refresh')).filter((x) => made.some((m) => m.conn.id === x.subject_id));
      return e.length >= N ? e : null;
    }, { timeoutMs: 30000, message: 'every refresh event' });
    assert.equal(evs.length, N, 'one event each: the killed node recorded nothing');
    for (const e of evs) {
      assert.equal(e.node, 'node-rescue');
      assert.equal(e.outcome, 'ok');
      // not before the killed node's leases ran out (claimed before the kill, 15 s)
      assert.ok(Date.parse(e.at) >= killedAt + 15000 - 8000, `${e.at}: after the lease`);
    }
    const st = up.stats();
    assert.equal(st.reused, 0, 'no refresh token presented after it was redeemed');
    assert.equal(st.redeemed - before.redeemed, N);
    for (const m of made) {
      const x = (await api(c, `/v1/connections/${m.conn.id}`)).json;
      assert.equal(x.status, 'ok');
      assert.equal(x.version, 2);
    }
  });
});
