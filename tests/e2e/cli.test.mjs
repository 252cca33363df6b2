// cli.test.mjs: the tokend client commands (status, events, help, version)
// against a real tokend, configured by TOKEND_ADDR and TOKEND_TOKEN.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { backends, freePort, request, runCli, spawnCli, startTokend, uniqueId, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

const SETTINGS = [
  'listen',
  'data-dir',
  'store',
  'threads',
  'store-pool',
  'max-body',
  'max-header',
  'max-connections',
  'max-connections-per-ip',
  'idle-timeout',
  'header-timeout',
  'min-body-rate',
  'allowed-hosts',
  'shutdown-timeout',
  'log-level',
  'log-format',
  'access-log',
  'dev',
  'node-name',
  'unseal-key-file',
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

async function failedAuth(t, rid = uniqueId('cli')) {
  const r = await request(t, '/v1/whoami', { auth: 'Bearer tko_nope', headers: { 'x-request-id': rid } });
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
    after(async () => {
      if (t) assert.equal((await t.stop()).code, 0);
    });

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
