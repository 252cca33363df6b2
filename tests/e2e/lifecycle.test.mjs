// lifecycle.test.mjs: graceful shutdown on SIGTERM/SIGINT, start-up
// errors (configuration, port in use, a schema from the future) and the
// precedence of file < environment < flags.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';

import {
  allEvents,
  api,
  backends,
  connect,
  freePort,
  freshDir,
  metric,
  scrape,
  serveExpectingExit,
  startTokend,
  stopAndScan,
  storeSql,
  waitFor,
  watch,
  withTimeout,
  SUITE_TIMEOUT_MS,
} from './lib/tokend.mjs';
import { noteSecretsInJson } from './lib/secrets.mjs';

/** Open a connection and send a POST whose body is only half there. */
async function halfPost(t, body) {
  const sock = await connect(t);
  const w = watch(sock);
  const half = Math.floor(body.length / 2);
  sock.write(
    `POST /v1/operator-tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${t.token}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body.slice(0, half)}`,
  );
  // In flight for tokend: its headers are in (the /metrics request that
  // observes this is in flight too, hence 2).
  await waitFor(async () => metric(await scrape(t), 'tokend_http_inflight') >= 2, { message: 'the half-sent request to be in flight' });
  return { sock, w, rest: body.slice(half) };
}

/** Whether a new TCP connection to port is refused. */
function refused(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (e) => resolve(e.code === 'ECONNREFUSED'));
  });
}

async function writeIni(lines) {
  const dir = await freshDir('ini');
  const file = path.join(dir, 'tokend.ini');
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

for (const backend of backends()) {
  describe(`lifecycle (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    it('SIGTERM lets an in-flight request finish (201), stops accepting, and exits 0', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const { sock, w, rest } = await halfPost(t, JSON.stringify({ name: 'in-flight', role: 'viewer' }));
      t.proc.kill('SIGTERM');
      await waitFor(() => t.stderr().includes('received SIGTERM'), { message: 'tokend to see SIGTERM' });
      // No new connections once stopping...
      await waitFor(() => refused(t.port), { message: 'new connections to be refused while stopping' });
      assert.equal(t.proc.exitCode, null, 'still running: a request is in flight');
      // ...but the one in flight is answered.
      sock.write(rest);
      await waitFor(() => w.response(), { timeoutMs: 10000, message: 'the in-flight answer' });
      const res = w.response();
      assert.equal(res.status, 201, res.body);
      assert.equal(res.json.name, 'in-flight');
      noteSecretsInJson(res.json); // a raw socket: the library did not see the token
      const exit = await withTimeout(t.exited, 10000, 'tokend to exit after the in-flight request');
      assert.equal(exit.code, 0, t.stderr().slice(-2000));
      sock.destroy();
      await t.stop();
      // On restart: the token exists and the stop was a clean one.
      const again = await startTokend({ backend, dataDir: t.dataDir, store: t.store });
      tc.after(() => again.stop());
      const list = await api(again, '/v1/operator-tokens');
      assert.ok(list.json.tokens.some((x) => x.name === 'in-flight'));
      const stops = await allEvents(again, 'kind=node&action=stop');
      assert.equal(stops.length, 1);
      assert.equal(stops[0].message, 'tokend stopped');
      await stopAndScan(again);
    });

    it('a request stuck past shutdown_timeout is cut off, and tokend still exits 0', async (tc) => {
      const t = await startTokend({ backend, args: ['--shutdown-timeout', '1'] });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const { sock } = await halfPost(t, JSON.stringify({ name: 'never-finished' }));
      const res = await t.stop('SIGTERM');
      sock.destroy();
      assert.equal(res.code, 0, t.stderr().slice(-2000));
      assert.ok(res.ms < 5000, `exited ${res.ms} ms after SIGTERM`);
      assert.match(t.stderr(), /still in flight/);
    });

    it('exits 0 within 5 s of SIGTERM when idle', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      assert.equal((await api(t, '/v1/whoami')).status, 200);
      const res = await t.stop('SIGTERM');
      assert.equal(res.code, 0, t.stderr().slice(-2000));
      assert.equal(res.signal, null);
      assert.ok(res.ms < 5000, `exited ${res.ms} ms after SIGTERM`);
      assert.match(t.stderr(), /received SIGTERM/);
    });

    it('SIGINT stops it the same way', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      const res = await t.stop('SIGINT');
      assert.equal(res.code, 0, t.stderr().slice(-2000));
      assert.ok(res.ms < 5000, `exited ${res.ms} ms after SIGINT`);
      assert.match(t.stderr(), /received SIGINT/);
    });

    it('--threads 0 exits 2 naming the setting and the allowed values', async () => {
      const r = await serveExpectingExit({ backend, args: ['--threads', '0'] });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /--threads/);
      assert.match(r.stderr, /threads must be an integer from 1 to 64/);
      assert.doesNotMatch(r.stdout, /listening/);
    });

    it('TOKEND_LOG_LEVEL=loud exits 2 naming the variable and the allowed values', async () => {
      const r = await serveExpectingExit({ backend, env: { TOKEND_LOG_LEVEL: 'loud' } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /TOKEND_LOG_LEVEL/);
      assert.match(r.stderr, /debug\|info\|warn\|error/);
      assert.match(r.stderr, /loud/);
    });

    it('an unknown flag, a bad INI file and a bad boolean exit 2 naming the culprit', async () => {
      const a = await serveExpectingExit({ backend, args: ['--no-such-setting', 'x'] });
      assert.equal(a.code, 2, a.stderr);
      assert.match(a.stderr, /--no-such-setting/);

      const file = await writeIni(['[tokend]', 'threads = 0']);
      const b = await serveExpectingExit({ backend, args: ['--config', file] });
      assert.equal(b.code, 2, b.stderr);
      assert.ok(b.stderr.includes(file), `names the file: ${b.stderr}`);
      assert.match(b.stderr, /threads/);

      const unknown = await writeIni(['colour = blue']);
      const c = await serveExpectingExit({ backend, args: ['--config', unknown] });
      assert.equal(c.code, 2, c.stderr);
      assert.match(c.stderr, /colour/);

      const missing = await serveExpectingExit({ backend, args: ['--config', '/nonexistent/tokend.ini'] });
      assert.equal(missing.code, 2, missing.stderr);
      assert.match(missing.stderr, /\/nonexistent\/tokend\.ini/);

      const d = await serveExpectingExit({ backend, args: ['--access-log=maybe'] });
      assert.equal(d.code, 2, d.stderr);
      assert.match(d.stderr, /access_log must be true or false/);
      const e = await serveExpectingExit({ backend, env: { TOKEND_IDLE_TIMEOUT: '0' } });
      assert.equal(e.code, 2, e.stderr);
      assert.match(e.stderr, /TOKEND_IDLE_TIMEOUT/);
      assert.match(e.stderr, /idle_timeout must be an integer from 1 to 3600/);
    });

    it('--listen on a port in use exits non-zero and says so', async (tc) => {
      const blocker = net.createServer();
      await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
      tc.after(() => new Promise((resolve) => blocker.close(resolve)));
      const port = blocker.address().port;
      const r = await serveExpectingExit({ backend, listen: `127.0.0.1:${port}` });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.match(r.stderr, /in use/i);
    });

    it('precedence: file < TOKEND_* environment < flag (observed through the bound port)', async (tc) => {
      const [p1, p2] = [await freePort(), await freePort()];
      const file = await writeIni([`listen = 127.0.0.1:${p1}`, 'log_level = info']);
      const a = await startTokend({ backend, listen: null, args: ['--config', file] });
      tc.after(() => a.stop('SIGKILL').catch(() => {}));
      assert.equal(a.port, p1, 'the file alone');
      assert.equal((await a.stop()).code, 0);
      const b = await startTokend({ backend, listen: null, args: ['--config', file], env: { TOKEND_LISTEN: `127.0.0.1:${p2}` } });
      tc.after(() => b.stop('SIGKILL').catch(() => {}));
      assert.equal(b.port, p2, 'the environment over the file');
      assert.equal((await b.stop()).code, 0);
      const c = await startTokend({ backend, args: ['--config', file], env: { TOKEND_LISTEN: `127.0.0.1:${p2}` } });
      tc.after(() => c.stop('SIGKILL').catch(() => {}));
      assert.ok(c.port !== p1 && c.port !== p2, 'the flag (--listen 127.0.0.1:0) over both');
      assert.equal((await c.stop()).code, 0);
    });

    it('precedence with an invalid value: an invalid TOKEND_LISTEN is named; a valid --listen overrides it', async (tc) => {
      const file = await writeIni(['listen = 127.0.0.1:0']);
      // The flag wins over the invalid environment value: it starts.
      const ok = await startTokend({ backend, args: ['--config', file], env: { TOKEND_LISTEN: 'not-an-address' } });
      tc.after(() => ok.stop('SIGKILL').catch(() => {}));
      assert.equal((await ok.stop()).code, 0);
      // Without the flag, the error names the environment variable.
      const r = await serveExpectingExit({ backend, listen: null, args: ['--config', file], env: { TOKEND_LISTEN: 'not-an-address' } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /listen/);
      assert.match(r.stderr, /TOKEND_LISTEN/, `the error names where the bad value came from: ${r.stderr}`);
    });

    it('refuses to start on a schema newer than itself, and says so', async (tc) => {
      const t = await startTokend({ backend });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      assert.equal((await t.stop()).code, 0);
      await storeSql(t, "INSERT INTO schema_version (version, name, applied_at) VALUES (999, 'from_the_future', 0)");
      const r = await serveExpectingExit({ backend, dataDir: t.dataDir, store: t.store });
      assert.notEqual(r.code, 0);
      assert.doesNotMatch(r.stdout, /listening/);
      assert.match(r.stderr, /schema is version 999/);
      assert.match(r.stderr, /newer/);
    });
  });
}
