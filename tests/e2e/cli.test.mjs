// cli.test.mjs: the tokend client commands (status, events, help, version)
// against a real tokend, configured by TOKEND_ADDR and TOKEND_TOKEN.
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { backends, freePort, request, runCli, spawnCli, startTokend, stopAndScan, uniqueId, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const SETTINGS = [
  'listen',
  'data-dir',
  'store',
  'store-check',
  'events-retention-days',
  'events-queue',
  'events-timeout',
  'threads',
  'handler-threads',
  'store-pool',
  'max-body',
  'max-header',
  'max-connections',
  'max-connections-per-ip',
  'idle-timeout',
  'header-timeout',
  'min-body-rate',
  'allowed-hosts',
  'trusted-proxies',
  'shutdown-timeout',
  'log-level',
  'log-format',
  'access-log',
  'access-log-refusals-per-s',
  'dev',
  'node-name',
  'unseal-key-file',
  'auth-fail-limit',
  'auth-fail-window',
  'allow-new-store',
  'outbound-connect-timeout',
  'outbound-timeout',
  'outbound-max-response',
  'outbound-max-concurrent',
  'outbound-ca-file',
  'outbound-proxy',
  'providers-dir',
  'tls-cert-file',
  'tls-key-file',
  'public-url',
  'stream-buffer',
  'max-parked',
  'max-streams',
  'max-streams-per-tenant',
  'auth-cache-size',
  'refresh-ahead',
  'refresh-ahead-percent',
  'refresh-max-idle',
  'refresh-timeout',
  'refresh-workers',
  'agent-heartbeat-interval',
  'agent-stale-after',
  'refresh-concurrency',
  'refresh-per-provider',
  'refresh-backoff-max',
  'oauth-access-token-ttl',
  'users-argon2-memory-kib',
  'users-argon2-iterations',
  'users-hash-concurrency',
  'users-hash-queue',
  'users-session-ttl',
  'users-login-fail-limit',
  'oauth-signing-alg',
  'oauth-signing-rotate-every',
  'oauth-signing-publish-ahead',
  'oauth-dcr',
  'oauth-dcr-max-clients',
  'oauth-dcr-rate',
  'oauth-authorize-rate',
  'oauth-cimd',
  'oauth-cimd-allow-loopback',
  'oauth-cimd-timeout',
  'oauth-cimd-ttl',
  'oauth-pkce-confidential',
  'oauth-flow-ttl',
  'oauth-refresh-token-ttl',
  'oauth-refresh-grace',
  'oauth-code-ttl',
  'console-idle-timeout',
  'console-session-lifetime',
];

/** Lines of output that are JSON objects (every line must be). */
function jsonLines(out) {
  return out
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        assert.fail(`not a JSON line: ${l}`);
      }
    });
}

/** A failed authentication that leaves its own event: each from its own
 * loopback address (repeats from one address in a window are coalesced). */
let nextFrom = 0;
async function failedAuth(t, rid = uniqueId('cli')) {
  const from = `127.0.3.${1 + (nextFrom++ % 250)}`;
  const r = await request(t, '/v1/whoami', { auth: 'Bearer tko_nope', headers: { 'x-request-id': rid }, from });
  // the event's trace id: tokend's own id for the request (the client's is echoed)
  rid = r.json.request_id;
  assert.equal(r.status, 401);
  return rid;
}

for (const backend of backends()) {
  describe(`CLI (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let env;
    before(async () => {
      t = await startTokend({ backend });
      env = { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token };
    });
    after(() => stopAndScan(t));

    it('status prints health, readiness and the operator, and exits 0', async () => {
      const r = await runCli(['status'], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^health\s+ok$/m);
      assert.match(r.stdout, new RegExp(`^ready\\s+ready \\(store ${backend}, schema \\d+, node \\S+\\)$`, 'm'));
      assert.match(r.stdout, /^operator\s+root \(admin\), tenant [0-9a-f-]{36}$/m);
      assert.ok(r.stdout.includes(t.url));
      assert.ok(!r.stdout.includes(t.token) && !r.stderr.includes(t.token), 'the token is never printed');
    });

    it('status --json is one JSON document', async () => {
      const r = await runCli(['status', '--json'], { env });
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.equal(j.address, t.url);
      assert.deepEqual(j.health, { status: 'ok' });
      assert.equal(j.ready.status, 'ready');
      assert.equal(j.ready.store, backend);
      assert.equal(j.operator.name, 'root');
      assert.equal(j.operator.role, 'admin');
    });

    it('status reads --token-file, and reports a refused token with exit 1', async () => {
      const f = await runCli(['status', '--token-file', path.join(t.dataDir, 'root-token')], { env: { TOKEND_ADDR: t.url } });
      assert.equal(f.code, 0, f.stderr);
      assert.match(f.stdout, /^operator\s+root/m);
      const bad = await runCli(['status'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: 'tko_not-a-token' } });
      assert.equal(bad.code, 1, bad.stdout + bad.stderr);
      assert.match(bad.stdout, /^operator\s+REFUSED: .*\(malformed\)$/m);
      const missing = await runCli(['status', '--token-file', '/nonexistent/token'], { env: { TOKEND_ADDR: t.url } });
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /\/nonexistent\/token/);
    });

    it('status against an address where nothing listens exits 3 with a helpful message', async () => {
      const port = await freePort();
      const r = await runCli(['status'], { env: { TOKEND_ADDR: `http://127.0.0.1:${port}`, TOKEND_TOKEN: t.token } });
      assert.equal(r.code, 3, r.stdout + r.stderr);
      assert.match(r.stderr, new RegExp(`cannot reach tokend at http://127\\.0\\.0\\.1:${port}`));
      assert.match(r.stderr, /TOKEND_ADDR/);
      const bad = await runCli(['status'], { env: { TOKEND_ADDR: '127.0.0.1:8750' } });
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /TOKEND_ADDR must start with http:\/\//);
    });

    it('events --json --limit 5 prints five JSON lines, newest first', async () => {
      for (let i = 0; i < 6; i++) await failedAuth(t);
      const r = await runCli(['events', '--json', '--limit', '5'], { env });
      assert.equal(r.code, 0, r.stderr);
      const evs = jsonLines(r.stdout);
      assert.equal(evs.length, 5);
      for (let i = 0; i < evs.length; i++) {
        assert.equal(typeof evs[i].seq, 'number');
        assert.equal(typeof evs[i].kind, 'string');
        if (i) assert.equal(evs[i].seq, evs[i - 1].seq - 1);
      }
      const node = await runCli(['events', '--json', '--kind', 'node'], { env });
      assert.equal(node.code, 0, node.stderr);
      assert.ok(jsonLines(node.stdout).every((e) => e.kind === 'node'));
      assert.ok(jsonLines(node.stdout).some((e) => e.action === 'start'));
    });

    it('events prints a table for people', async () => {
      const r = await runCli(['events', '--kind', 'node'], { env });
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.match(lines[0], /^AT\s+SEQ\s+KIND\s+SOURCE\s+ACTION\s+OUTCOME\s+SUBJECT\s+MESSAGE$/);
      assert.ok(lines.slice(1).some((l) => /\bnode\b.*\bstart\b.*\bok\b/.test(l)), r.stdout);
    });

    it('events reports a bad parameter (exit 1) and a bad argument (exit 2)', async () => {
      const r = await runCli(['events', '--limit', '0'], { env });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stderr, /HTTP 400 invalid_parameter/);
      assert.match(r.stderr, /limit/);
      const u = await runCli(['events', '--colour', 'red'], { env });
      assert.equal(u.code, 2);
      assert.match(u.stderr, /--colour/);
      const n = await runCli(['events'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: 'tko_nope' } });
      assert.equal(n.code, 1);
      assert.match(n.stderr, /401/);
    });

    it('events -f prints an event caused after it started, then stops on SIGINT', async (tc) => {
      const f = await spawnCli(['events', '-f', '--json'], { env });
      tc.after(() => f.stop('SIGKILL').catch(() => {}));
      // It prints the latest events first, the start of this node among them.
      await waitFor(() => f.stdout().includes('"action":"start"'), { message: 'the initial events' });
      const rid = await failedAuth(t);
      await waitFor(() => f.stdout().includes(rid), { timeoutMs: 15000, message: `the event of request ${rid} in events -f` });
      const ev = jsonLines(f.stdout()).find((e) => e.trace_id === rid);
      assert.equal(ev.action, 'authenticate');
      assert.equal(ev.outcome, 'denied');
      const res = await f.stop('SIGINT');
      assert.equal(res.code, 0, f.stderr());
    });

    it('events -f with a filter that matched nothing yet prints each new event once, oldest first', async (tc) => {
      const served = () => (t.stderr().match(/"route":"\/v1\/events","path":"\/v1\/events","status":200/g) || []).length;
      const before = served();
      // Nothing matches yet: denied events from now on.
      const f = await spawnCli(['events', '-f', '--json', '--outcome', 'denied', '--since', new Date().toISOString()], { env });
      tc.after(() => f.stop('SIGKILL').catch(() => {}));
      // Its first request was answered (tokend's access log shows it).
      await waitFor(() => served() > before, { message: 'the first events request of the CLI' });
      // Several events at once, then one more after they were printed, so
      // that anything printed twice or out of order shows by then.
      const ids = await Promise.all(Array.from({ length: 5 }, () => failedAuth(t)));
      await waitFor(() => ids.every((id) => f.stdout().includes(id)), { timeoutMs: 15000, message: 'the five events in events -f' });
      const marker = await failedAuth(t);
      await waitFor(() => f.stdout().includes(marker), { timeoutMs: 15000, message: 'the marker event' });
      assert.equal((await f.stop('SIGINT')).code, 0);
      const evs = jsonLines(f.stdout());
      const seqs = evs.map((e) => e.seq);
      assert.equal(new Set(seqs).size, seqs.length, `each event printed once; got seqs ${seqs.join(',')}`);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `oldest first; got seqs ${seqs.join(',')}`);
      assert.equal(evs.length, 6);
      assert.ok(evs.every((e) => e.outcome === 'denied'));
    });

    it('help serve lists every setting with its flag and default', async () => {
      const r = await runCli(['help', 'serve']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^usage: tokend serve/m);
      for (const s of SETTINGS) assert.match(r.stdout, new RegExp(`^  --${s}\\s`, 'm'), `--${s} is listed`);
      assert.equal((r.stdout.match(/^\s+default: \S/gm) || []).length, SETTINGS.length, 'a default for each setting');
      assert.match(r.stdout, /TOKEND_/);
      const s = await runCli(['serve', '--help']);
      assert.equal(s.code, 0);
      assert.equal(s.stdout, r.stdout);
    });

    it('help lists the commands; version prints the version; unknown commands exit 2', async () => {
      const h = await runCli(['help']);
      assert.equal(h.code, 0);
      for (const c of ['serve', 'status', 'events', 'version', 'help']) assert.match(h.stdout, new RegExp(`^  tokend ${c}`, 'm'));
      for (const c of ['status', 'events', 'version']) {
        const r = await runCli(['help', c]);
        assert.equal(r.code, 0);
        assert.match(r.stdout, new RegExp(`^usage: tokend ${c}`));
      }
      const v = await runCli(['version']);
      assert.equal(v.code, 0);
      assert.match(v.stdout, /^tokend \d+\.\d+\.\d+/);
      const none = await runCli(['help', 'nope']);
      assert.equal(none.code, 2);
      assert.match(none.stderr, /nope/);
      const bogus = await runCli(['bogus']);
      assert.equal(bogus.code, 2);
      assert.match(bogus.stderr, /unknown command 'bogus'/);
    });
  });
}

/** A stand-in for tokend: answers every request with handler(req, body)
 * -> {status, body, type}, and records what it was sent. */
async function fakeServer(handler) {
  const seen = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      const a = handler(req, body);
      res.writeHead(a.status, { 'content-type': a.type || 'application/json' });
      res.end(a.body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, close: () => new Promise((resolve) => server.close(resolve)) };
}

const ESC = '\u001b';
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f\u0080-\u009f]/;

describe('CLI against a server that misbehaves (a stand-in for tokend)', { timeout: SUITE_TIMEOUT_MS }, () => {
  it('a 200 whose body is not JSON is an error (exit 1, saying so), for events and status', async (tc) => {
    const srv = await fakeServer(() => ({ status: 200, body: '<html>hello</html>', type: 'text/html' }));
    tc.after(() => srv.close());
    const env = { TOKEND_ADDR: srv.url, TOKEND_TOKEN: 'tko_x' };
    const e = await runCli(['events'], { env });
    assert.equal(e.code, 1, e.stdout + e.stderr);
    assert.match(e.stderr, /not a JSON object/);
    assert.equal(e.stdout, '', 'no empty table');
    const s = await runCli(['status'], { env });
    assert.equal(s.code, 1, s.stdout + s.stderr);
    assert.match(s.stderr, /not a JSON object/);
    // JSON, but no events array: also an error.
    const srv2 = await fakeServer(() => ({ status: 200, body: '{"events":"none"}' }));
    tc.after(() => srv2.close());
    const e2 = await runCli(['events'], { env: { ...env, TOKEND_ADDR: srv2.url } });
    assert.equal(e2.code, 1);
    assert.match(e2.stderr, /no "events" array/);
  });

  it('control characters (ESC...) in server strings never reach the terminal: events table and errors', async (tc) => {
    const evil = `red ${ESC}[31mALERT${ESC}]0;title\u0007 \u009b2J bell\u0007 tab\tend`;
    const event = {
      id: '01900000-0000-7000-8000-000000000001', seq: 1, at: '2026-12-02T00:00:00.000Z', trace_id: 't', kind: `operator${ESC}[2J`,
      source: 'api', action: 'authenticate', outcome: 'denied', subject_type: 'operator_token', subject_id: null,
      message: evil, detail: {}, latency_us: null, node: 'n', hash: 'h',
    };
    const srv = await fakeServer((req) =>
      req.url.startsWith('/v1/events')
        ? { status: 200, body: JSON.stringify({ events: [event], next_cursor: null }) }
        : { status: 400, body: JSON.stringify({ error: `bad${ESC}[0m`, message: evil, reason: `r${ESC}c` }) },
    );
    tc.after(() => srv.close());
    const env = { TOKEND_ADDR: srv.url, TOKEND_TOKEN: 'tko_x' };
    const e = await runCli(['events'], { env });
    assert.equal(e.code, 0, e.stderr);
    assert.match(e.stdout, /ALERT/);
    assert.ok(!CONTROLS.test(e.stdout.replace(/\n/g, '')), `no control character in: ${JSON.stringify(e.stdout)}`);
    const s = await runCli(['operator', 'seal'], { env });
    assert.equal(s.code, 1);
    assert.match(s.stderr, /ALERT/);
    assert.ok(!CONTROLS.test(s.stderr.replace(/\n/g, '')), `no control character in: ${JSON.stringify(s.stderr)}`);
  });

  it('requests that change something say Content-Type: application/json', async (tc) => {
    const srv = await fakeServer(() => ({ status: 200, body: '{"sealed":true}' }));
    tc.after(() => srv.close());
    const env = { TOKEND_ADDR: srv.url, TOKEND_TOKEN: 'tko_x' };
    await runCli(['operator', 'seal'], { env });
    await runCli(['operator', 'unseal', 'tks1-x'], { env });
    await runCli(['events'], { env });
    const posts = srv.seen.filter((r) => r.method !== 'GET');
    assert.equal(posts.length, 2, JSON.stringify(srv.seen.map((r) => r.method + ' ' + r.url)));
    for (const r of posts) {
      assert.equal(r.headers['content-type'], 'application/json', `${r.method} ${r.url}`);
      assert.doesNotThrow(() => JSON.parse(r.body), `${r.method} ${r.url} sends a JSON body: ${r.body}`);
    }
  });
});
