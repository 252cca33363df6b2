// lib/tokend.mjs: start real tokend processes for the end-to-end tests, and
// talk to them.
//
// Every process runs the binary named by TOKEND_BIN (default: the sanitizer
// build, build/test/tokend) on a loopback port chosen by the kernel
// (--listen 127.0.0.1:0), with a fresh data directory and, for the postgres
// backend, a fresh database on the server named by TOKEND_TEST_PG.
//
// No npm dependencies: node:test, node:assert, node:http, node:net and
// node:child_process only. Node 18 compatible.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { noteSecret, noteSecretsInJson, noteSecretsInText, noteServeLogs } from './secrets.mjs';

export { assertNoSecretIn, scanForSecrets, seenSecrets, stopAndScan } from './secrets.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..', '..');
export const BIN = process.env.TOKEND_BIN || path.join(REPO, 'build', 'test', 'tokend');

/** How long a tokend gets to print its "listening" line. The ASan build on a
 * busy 2-core machine is slow to start, so this is generous. */
export const START_TIMEOUT_MS = 20000;

/** A whole describe() block never takes longer than this: a hang fails the
 * suite (and its after hooks stop the processes) instead of holding CI. */
export const SUITE_TIMEOUT_MS = 180000;

// ---------------------------------------------------------------- backends

/** The store backends every suite runs on: SQLite always, PostgreSQL when
 * TOKEND_TEST_PG is set. In CI (CI=true) or with TOKEND_REQUIRE_PG=1, a
 * missing TOKEND_TEST_PG is an error, never a silent skip. */
export function backends() {
  const list = ['sqlite'];
  if (process.env.TOKEND_TEST_PG) list.push('postgres');
  else if (process.env.CI === 'true' || process.env.TOKEND_REQUIRE_PG === '1')
    throw new Error(
      'TOKEND_TEST_PG is not set but CI=true or TOKEND_REQUIRE_PG=1: the PostgreSQL ' +
        'backend must not be skipped (run the suite under tests/with-postgres.sh)',
    );
  return list;
}

// ---------------------------------------------------------------- small utilities

/** Poll fn() until it returns a truthy value (returned) or the deadline
 * passes (throws with message and the last error or value). */
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 50, message = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= end)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}; last: ${last instanceof Error ? last.stack : JSON.stringify(last)}`);
    await delay(intervalMs);
  }
}

export function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Race a promise against a deadline; reject with message when it passes. */
export function withTimeout(promise, ms, message) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${message}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

export function uniqueId(prefix = 'e2e') {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(5).toString('hex')}`;
}

// Directories made here; removed when the test process ends (kept with
// TOKEND_E2E_KEEP=1, to look into).
const made = [];
export async function freshDir(label = 'data') {
  const dir = await mkdtemp(path.join(tmpdir(), `tokend-e2e-${label}-`));
  made.push(dir);
  return dir;
}

/** A loopback port that was free a moment ago (bound, then released). */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const SANITIZER = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer/;

/** Fail when a sanitizer wrote a report into a process's stderr. */
export function assertNoSanitizerReport(stderr, what = 'tokend') {
  const m = SANITIZER.exec(stderr);
  if (m) {
    const from = Math.max(0, m.index - 200);
    assert.fail(`${what}: sanitizer report in stderr:\n${stderr.slice(from, from + 6000)}`);
  }
}

/** The environment for a child: ours without any TOKEND_* variable (so
 * that the test runner's own settings never leak into tokend), plus extra. */
function childEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TOKEND_')) env[k] = v;
  // Sanitizer reports must reach stderr, and a report must end the process.
  env.ASAN_OPTIONS = env.ASAN_OPTIONS || 'abort_on_error=0:halt_on_error=1';
  env.UBSAN_OPTIONS = env.UBSAN_OPTIONS || 'print_stacktrace=1:halt_on_error=1';
  return { ...env, ...extra };
}

// Every child this module spawns; killed if the test process exits early.
const live = new Set();
function killAll() {
  for (const p of live) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
process.on('exit', () => {
  killAll();
  if (!process.env.TOKEND_E2E_KEEP)
    for (const d of made) rmSync(d, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    killAll();
    process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
  });
}

function track(proc) {
  live.add(proc);
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      live.delete(proc);
      resolve({ code, signal, at: Date.now() });
    });
    proc.once('error', (err) => {
      live.delete(proc);
      resolve({ code: null, signal: null, error: err, at: Date.now() });
    });
  });
  return exited;
}

// ---------------------------------------------------------------- PostgreSQL

function pgAdminUrl() {
  const u = process.env.TOKEND_TEST_PG;
  if (!u) throw new Error('TOKEND_TEST_PG is not set: the postgres backend needs tests/with-postgres.sh');
  return u;
}

/** Run SQL with psql against url (default: the admin database). */
export function psql(sql, url = pgAdminUrl()) {
  return new Promise((resolve, reject) => {
    execFile('psql', [url, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql], { timeout: 30000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`psql failed: ${sql}\n${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

let dbCounter = 0;
/** CREATE DATABASE with a unique name; returns its libpq URL. */
export async function createPgDatabase() {
  const name = `tokend_e2e_${process.pid}_${++dbCounter}_${randomBytes(3).toString('hex')}`;
  await psql(`CREATE DATABASE ${name}`);
  const u = new URL(pgAdminUrl());
  u.pathname = `/${name}`;
  return u.toString();
}

/** Run SQL with sqlite3 on a database file. */
export function sqlite(file, sql) {
  return new Promise((resolve, reject) => {
    execFile('sqlite3', [file, sql], { timeout: 30000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`sqlite3 failed: ${sql}\n${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Run SQL on the store of an instance (or {backend, dataDir, store}). */
export function storeSql(inst, sql) {
  if (inst.backend === 'postgres') return psql(sql, inst.store);
  return sqlite(path.join(inst.dataDir, 'tokend.db'), sql);
}

/** SQL that bumps the auth epoch of the tenant of operator token tokenId,
 * as tokend's own writers do in the writing transaction (migration 0005):
 * a test that changes a credential behind tokend's back appends it, and
 * each node's authentication cache lets go of the tenant within 1 s. */
export function bumpAuthEpochSql(tokenId) {
  return (
    'UPDATE auth_clock SET seq = seq + 1 WHERE id = 1; ' +
    `UPDATE tenants SET auth_seq = (SELECT seq FROM auth_clock WHERE id = 1) WHERE id = (SELECT tenant_id FROM operator_tokens WHERE id = '${tokenId}');`
  );
}

// ---------------------------------------------------------------- tokend serve

/**
 * Spawn `tokend serve` without waiting for anything. Options:
 *   backend  'sqlite' (default) or 'postgres'
 *   dataDir  reuse a data directory (default: a fresh one)
 *   store    reuse a store URL (postgres: default a fresh database)
 *   env      extra environment (TOKEND_* of the test runner never leak in)
 *   args     extra arguments after the defaults (so they override them)
 *   dev      pass --dev (default true)
 *   listen   the --listen value (default 127.0.0.1:0; null: no flag)
 */
export async function spawnServe(opts = {}) {
  const backend = opts.backend || 'sqlite';
  const dataDir = opts.dataDir || (await freshDir(backend));
  let store = opts.store;
  if (!store && backend === 'postgres') store = await createPgDatabase();
  const args = ['serve'];
  if (opts.dev !== false) args.push('--dev');
  if (opts.listen !== null) args.push('--listen', opts.listen || '127.0.0.1:0');
  args.push('--data-dir', dataDir);
  if (store) args.push('--store', store);
  args.push(...(opts.args || []));
  const proc = spawn(BIN, args, { env: childEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = track(proc);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (err += d));
  // Wait for the pipes to be drained, not only for the exit.
  const closed = new Promise((resolve) => proc.once('close', resolve));
  // for the secret scan (lib/secrets.mjs): every serve's output on this data dir or store
  noteServeLogs({ dataDir, store, pid: proc.pid, stdout: () => out, stderr: () => err });
  return {
    backend,
    dataDir,
    store,
    args,
    proc,
    pid: proc.pid,
    exited,
    closed,
    stdout: () => out,
    stderr: () => err,
  };
}

/**
 * Start `tokend serve --dev` and wait until it listens. Returns
 *   {backend, port, url, token, dataDir, store, proc, stderr(), stdout(),
 *    stop(signal) -> {code, signal, ms}, exited}
 * Fails (with the collected stderr) if the process exits first or does not
 * listen within START_TIMEOUT_MS.
 */
export async function startTokend(opts = {}) {
  const s = await spawnServe(opts);
  const started = Date.now();
  let port;
  try {
    port = await waitForListening(s, opts.startTimeoutMs || START_TIMEOUT_MS);
  } catch (e) {
    if (s.proc.exitCode === null && s.proc.signalCode === null) {
      s.proc.kill('SIGKILL');
      await s.exited;
    }
    throw e;
  }
  const inst = {
    ...s,
    port,
    url: `http://127.0.0.1:${port}`,
    startMs: Date.now() - started,
    token: null,
  };
  if (opts.dev !== false) {
    const rt = path.join(s.dataDir, 'root-token');
    try {
      inst.token = (await readFile(rt, 'utf8')).trim();
      noteSecret(inst.token, { kind: 'root', origin: { url: inst.url, dataDir: inst.dataDir, store: inst.store } });
    } catch (e) {
      if (!opts.allowNoRootToken) {
        await stopInstance(inst, 'SIGKILL').catch(() => {});
        throw new Error(`tokend started but ${rt} is unreadable: ${e.message}\nstderr:\n${s.stderr()}`);
      }
    }
  }
  let stopped = null;
  inst.stop = (signal = 'SIGTERM', stopOpts) => {
    if (!stopped) stopped = stopInstance(inst, signal, stopOpts);
    return stopped;
  };
  return inst;
}

async function waitForListening(s, timeoutMs) {
  const re = /tokend: listening on port (\d+)/;
  const end = Date.now() + timeoutMs;
  for (;;) {
    const m = re.exec(s.stdout());
    if (m) return Number(m[1]);
    if (s.proc.exitCode !== null || s.proc.signalCode !== null) {
      await s.closed;
      assertNoSanitizerReport(s.stderr());
      throw new Error(
        `tokend exited (code ${s.proc.exitCode}, signal ${s.proc.signalCode}) before listening: ${s.args.join(' ')}\nstderr:\n${s.stderr()}`,
      );
    }
    if (Date.now() >= end)
      throw new Error(`tokend did not print its listening line within ${timeoutMs} ms: ${s.args.join(' ')}\nstdout:\n${s.stdout()}\nstderr:\n${s.stderr()}`);
    await delay(20);
  }
}

/** Send signal, wait for the exit (SIGKILL after timeoutMs, which then
 * fails), check stderr for sanitizer reports. */
async function stopInstance(inst, signal = 'SIGTERM', { timeoutMs = 15000 } = {}) {
  const t0 = Date.now();
  if (inst.proc.exitCode === null && inst.proc.signalCode === null) inst.proc.kill(signal);
  let res;
  try {
    res = await withTimeout(inst.exited, timeoutMs, `tokend (pid ${inst.pid}) to exit after ${signal}`);
  } catch (e) {
    inst.proc.kill('SIGKILL');
    await inst.exited;
    await inst.closed;
    throw new Error(`${e.message}\nstderr:\n${inst.stderr().slice(-4000)}`);
  }
  await inst.closed;
  assertNoSanitizerReport(inst.stderr());
  return { code: res.code, signal: res.signal, ms: res.at - t0 };
}

/** Run `tokend serve` expecting it to exit by itself (a start-up error).
 * Returns {code, signal, stdout, stderr}. Fails if it starts listening. */
export async function serveExpectingExit(opts = {}, timeoutMs = START_TIMEOUT_MS) {
  const s = await spawnServe(opts);
  const res = await withTimeout(s.exited, timeoutMs, 'tokend serve to exit').catch(() => null);
  if (!res) {
    s.proc.kill('SIGKILL');
    await s.exited;
    await s.closed;
    assert.fail(`tokend serve did not exit within ${timeoutMs} ms: ${s.args.join(' ')}\nstdout:\n${s.stdout()}\nstderr:\n${s.stderr()}`);
  }
  await s.closed;
  assertNoSanitizerReport(s.stderr());
  return { code: res.code, signal: res.signal, stdout: s.stdout(), stderr: s.stderr(), dataDir: s.dataDir, store: s.store };
}

// ---------------------------------------------------------------- the CLI

/** Run a tokend client command to completion. cwd defaults to a fresh
 * directory, so that ./tokend-data/root-token of the repo is never used. */
export async function runCli(args, { env = {}, cwd, timeoutMs = 30000 } = {}) {
  const dir = cwd || (await freshDir('cli'));
  const proc = spawn(BIN, args, { env: childEnv(env), cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = track(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  const closed = new Promise((resolve) => proc.once('close', resolve));
  let res;
  try {
    res = await withTimeout(exited, timeoutMs, `tokend ${args.join(' ')}`);
  } catch (e) {
    proc.kill('SIGKILL');
    await exited;
    throw new Error(`${e.message}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
  }
  await closed;
  assertNoSanitizerReport(stderr, `tokend ${args[0]}`);
  const origin = env.TOKEND_ADDR ? { url: env.TOKEND_ADDR } : null;
  noteSecretsInText(stdout, { origin });
  noteSecretsInText(stderr, { origin });
  return { code: res.code, signal: res.signal, stdout, stderr };
}

/** Start a long-running client command (events -f); returns the child with
 * stdout()/stderr() accessors and stop(signal). */
export async function spawnCli(args, { env = {}, cwd } = {}) {
  const dir = cwd || (await freshDir('cli'));
  const proc = spawn(BIN, args, { env: childEnv(env), cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = track(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  const closed = new Promise((resolve) => proc.once('close', resolve));
  let stopped = null;
  return {
    proc,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    stop(signal = 'SIGINT', timeoutMs = 10000) {
      if (stopped) return stopped;
      stopped = (async () => {
        if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
        let res;
        try {
          res = await withTimeout(exited, timeoutMs, `tokend ${args.join(' ')} to exit after ${signal}`);
        } catch (e) {
          proc.kill('SIGKILL');
          await exited;
          throw e;
        }
        await closed;
        assertNoSanitizerReport(stderr, `tokend ${args[0]}`);
        return res;
      })();
      return stopped;
    },
  };
}

// ---------------------------------------------------------------- HTTP

/**
 * One HTTP request on a fresh connection (Connection: close, no pooling, so
 * that no idle keep-alive connection of the test counts against tokend's
 * connection cap). target: an instance or a base URL.
 *   opts.token    Bearer token; opts.auth: a raw Authorization value
 *   opts.json     a value sent as application/json
 *   opts.body     a raw string/Buffer body; opts.headers extra headers
 *   opts.from     the source address (another loopback address, 127.0.0.2...)
 *   opts.noteSecrets  false: do not add the answer's secrets to seenSecrets()
 * Returns {status, headers, text, json} (json null if the body is not JSON).
 */
export function request(target, pathname, opts = {}) {
  const base = typeof target === 'string' ? target : target.url;
  const u = new URL(pathname, base);
  const headers = { connection: 'close', ...(opts.headers || {}) };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.auth !== undefined) headers.authorization = opts.auth;
  let body = opts.body;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
  }
  // tokend wants Content-Type: application/json on every state-changing
  // API request, body or not; a test that checks otherwise sets the header
  // itself (null: send none).
  const hasCt = Object.keys(headers).some((h) => h.toLowerCase() === 'content-type');
  if (!hasCt && ['POST', 'PUT', 'PATCH', 'DELETE'].includes((opts.method || 'GET').toUpperCase())) headers['content-type'] = 'application/json';
  for (const k of Object.keys(headers)) if (headers[k] === null) delete headers[k];
  if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: opts.rawPath || u.pathname + u.search,
        method: opts.method || 'GET',
        headers,
        agent: false,
        ...(opts.from ? { localAddress: opts.from } : {}),
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json = null;
          try {
            json = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          if (opts.noteSecrets !== false)
            noteSecretsInJson(json, typeof target === 'string' ? { url: base } : { url: base, dataDir: target.dataDir, store: target.store });
          resolve({ status: res.statusCode, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(opts.timeoutMs || 30000, () => req.destroy(new Error(`HTTP ${opts.method || 'GET'} ${pathname}: no answer in time`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** GET with the instance's root token (or opts.token). */
export function api(inst, pathname, opts = {}) {
  return request(inst, pathname, { token: inst.token, ...opts });
}

/**
 * Create a tenant on node (POST /v1/tenants with the node's root token, an
 * admin of the default tenant) for cross-tenant checks. Returns
 * {id, name, created_at, token, tokenId}: token is the new tenant's first
 * admin operator token. name defaults to a fresh unique slug.
 */
export async function createTenant(node, name = uniqueId('t').toLowerCase().replace(/[^a-z0-9-]/g, '-')) {
  const r = await request(node, '/v1/tenants', { method: 'POST', token: node.token, json: { name } });
  assert.equal(r.status, 201, `POST /v1/tenants ${name}: ${r.text}`);
  return { ...r.json.tenant, token: r.json.token, tokenId: r.json.token_id };
}

/** Every event the query matches, walking next_cursor pages of `limit`. */
export async function allEvents(inst, query = '', { limit = 1000, token, from } = {}) {
  const seen = [];
  let cursor = null;
  for (let page = 0; page < 100000; page++) {
    const q = new URLSearchParams(query);
    q.set('limit', String(limit));
    if (cursor !== null) q.set('cursor', String(cursor));
    const r = await api(inst, `/v1/events?${q}`, { ...(token ? { token } : {}), ...(from ? { from } : {}) });
    assert.equal(r.status, 200, `GET /v1/events?${q}: ${r.text}`);
    seen.push(...r.json.events);
    if (r.json.next_cursor === null) return seen;
    cursor = r.json.next_cursor;
  }
  throw new Error('paging did not end');
}

// ---------------------------------------------------------------- raw sockets

/** Open a TCP connection to the instance; resolves when connected. */
export function connect(inst, { port } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: port || inst.port });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Watch a socket: collects what arrives; .closed resolves on close. */
export function watch(sock) {
  const w = { data: Buffer.alloc(0), ended: false, error: null, closedAt: null };
  sock.on('data', (d) => (w.data = Buffer.concat([w.data, d])));
  sock.on('error', (e) => (w.error = e));
  w.closed = new Promise((resolve) => {
    sock.once('close', () => {
      w.closedAt = Date.now();
      w.ended = true;
      resolve(w);
    });
  });
  w.text = () => w.data.toString('latin1');
  w.response = () => parseResponse(w.data);
  return w;
}

/** Parse one HTTP/1.1 response from buf; null until headers and the body
 * (by Content-Length) are complete. */
export function parseResponse(buf) {
  const s = buf.toString('latin1');
  const end = s.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = s.slice(0, end).split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) return { status: 0, headers: {}, body: '', raw: s, malformed: true };
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const len = headers['content-length'] !== undefined ? Number(headers['content-length']) : null;
  const bodyBytes = buf.subarray(Buffer.byteLength(s.slice(0, end + 4), 'latin1'));
  if (len !== null && bodyBytes.length < len) return null;
  const body = bodyBytes.subarray(0, len ?? bodyBytes.length).toString('utf8');
  let json = null;
  try {
    json = JSON.parse(body);
  } catch {
    /* not JSON */
  }
  return { status: Number(m[1]), headers, body, json };
}

/**
 * Send raw bytes on a new connection and wait for one complete response or
 * the connection to close (whichever first), up to timeoutMs. Write errors
 * (the server closing while we still send) are tolerated: what counts is
 * what the server answered. Returns {response|null, closed, error}.
 */
export async function rawExchange(inst, data, { timeoutMs = 10000 } = {}) {
  const sock = await connect(inst);
  const w = watch(sock);
  sock.write(data, () => {});
  try {
    await waitFor(() => w.ended || w.response(), { timeoutMs, intervalMs: 20, message: 'a response or a close' });
  } finally {
    sock.destroy();
  }
  return { response: w.response(), closed: w.ended, error: w.error, raw: w.text() };
}

// ---------------------------------------------------------------- Prometheus

/** Parse Prometheus text into [{name, labels, value}]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[2]) for (const p of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[p[1]] = p[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample with this name whose labels include these
 * (0 when absent: counters start absent). */
export function metric(samples, name, labels = {}) {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${hits.length} samples match ${name} ${JSON.stringify(labels)}`);
  return hits.length ? hits[0].value : 0;
}

export async function scrape(inst) {
  const r = await request(inst, '/metrics');
  assert.equal(r.status, 200, r.text);
  return parseMetrics(r.text);
}

// ---------------------------------------------------------------- faults

/** A TCP proxy in front of host:port (e.g. the shared PostgreSQL) whose
 * forwarding can be stalled (both directions stop being read) and resumed:
 * a stalled server without stopping the shared one. */
export async function stallableProxy(host, port) {
  const pairs = new Set();
  let stalled = false;
  const server = net.createServer((client) => {
    const up = net.connect({ host, port });
    const pair = { client, up };
    pairs.add(pair);
    if (stalled) {
      client.pause();
      up.pause();
    } else {
      client.pipe(up);
      up.pipe(client);
    }
    const end = () => {
      client.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    for (const s of [client, up]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    stall() {
      stalled = true;
      for (const p of pairs) {
        p.client.unpipe(p.up);
        p.up.unpipe(p.client);
        p.client.pause();
        p.up.pause();
      }
    },
    resume() {
      stalled = false;
      for (const p of pairs) {
        p.client.pipe(p.up);
        p.up.pipe(p.client);
        p.client.resume();
        p.up.resume();
      }
    },
    close() {
      for (const p of pairs) {
        p.client.destroy();
        p.up.destroy();
      }
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
