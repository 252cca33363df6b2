// lib/secrets.mjs: the secret scan every suite ends with (CONVENTIONS.md,
// "Tests"): no secret the suite saw may be left in clear in a node's data
// dir, its store, its logs or its events.
//
//   after(async () => { ...stop or not...; await assertNoSecretIn(t); });
//
// scanForSecrets(node, secrets, opts) looks in
//   - every file under node.dataDir (the SQLite db, its -wal and -shm, the
//     marker, key files...), byte for byte, except the dev-mode hand-off
//     file root-token (it holds the root token by design);
//   - a dump of the store: `sqlite3 .dump` of tokend.db, or for PostgreSQL
//     `pg_dump` of node.store (a SELECT of every table through psql when
//     pg_dump is missing or fails);
//   - the stdout and stderr of every `tokend serve` that lib/tokend.mjs
//     started on this data dir or store (restarts included);
//   - the events read through the API (GET /v1/events, every page) of each
//     tenant it holds a token for (the node's root token, the admin tokens
//     of tenants created through the API), when the node is running;
// for each secret in clear and encoded (base64 and base64url at the three
// byte alignments, hex in both cases, URL-encoded), and returns findings
// [{secret, form, where, offset}] (secret is a preview, never the value).
//
// seenSecrets() is the registry lib/tokend.mjs fills as the suite runs:
// the root token read at start, and every issued secret (tk?_...) or
// unseal share (tks1-...) in a JSON answer of request()/api() or in the
// output of runCli(). An issued secret is searched by its 36 characters
// after the prefix, a share by its 43 secret characters (its number and
// checksum are public), anything else as given.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { allEvents, request } from './tokend.mjs';

const ISSUED = /\btk[a-z]_[0-9A-Za-z]{36}\b/g;
const SHARE = /\btks1-\d{1,3}-[A-Za-z0-9_-]{43}-[0-9a-f]{6}\b/g;

// ---------------------------------------------------------------- the registry

const SPECIFIC = new Set(['root', 'tenant-admin', 'share']); // a later note may say more than 'operator'
const registry = new Map(); // value -> {value, kind, origin, tenantId}

/** Remember a secret (idempotent). kind: 'root', 'share', 'operator',
 * 'tenant-admin', ...; origin: {url, dataDir, store} of the node that
 * handed it out, when known; tenantId for tenant admin tokens. */
export function noteSecret(value, { kind = 'secret', origin = null, tenantId = null } = {}) {
  if (typeof value !== 'string' || value.length < 16) return;
  const had = registry.get(value);
  if (had) {
    if (tenantId && !had.tenantId) had.tenantId = tenantId;
    if (SPECIFIC.has(kind)) had.kind = kind;
    return;
  }
  registry.set(value, { value, kind, origin, tenantId });
}

/** Note every issued secret and share found in text (CLI output). */
export function noteSecretsInText(text, opts = {}) {
  if (typeof text !== 'string') return;
  for (const m of text.matchAll(ISSUED)) noteSecret(m[0], { kind: m[0].startsWith('tko_') ? 'operator' : 'issued', ...opts });
  for (const m of text.matchAll(SHARE)) noteSecret(m[0], { kind: 'share', ...opts });
}

/** Note every secret in a parsed JSON answer: strings shaped like issued
 * secrets or shares anywhere in it; a tenant's first admin token
 * ({tenant: {id}, token}) with its tenant. */
export function noteSecretsInJson(json, origin = null) {
  if (json === null || typeof json !== 'object') return;
  const walk = (v) => {
    if (typeof v === 'string') {
      if (v.length <= 200) noteSecretsInText(v, { origin });
    } else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(json);
  if (typeof json.root_token === 'string') noteSecret(json.root_token, { kind: 'root', origin });
  if (json.tenant && typeof json.tenant.id === 'string' && typeof json.token === 'string')
    noteSecret(json.token, { kind: 'tenant-admin', origin, tenantId: json.tenant.id });
}

/** Every secret the suite has seen so far (values). With kind, only those. */
export function seenSecrets({ kind } = {}) {
  return [...registry.values()].filter((e) => !kind || e.kind === kind).map((e) => e.value);
}

/** Forget the registry (the harness test uses it). */
export function forgetSecrets() {
  registry.clear();
}

// ---------------------------------------------------------------- logs of serve processes

const logs = []; // {dataDir, store, pid, stdout(), stderr()}

/** Called by lib/tokend.mjs for every `tokend serve` it spawns. */
export function noteServeLogs(entry) {
  logs.push(entry);
}

function logsOf(node) {
  return logs.filter((l) => (node.dataDir && l.dataDir === node.dataDir) || (node.store && l.store === node.store));
}

// ---------------------------------------------------------------- the forms searched

/** The part of a secret that must never appear. */
export function secretCore(s) {
  if (/^tk[a-z]_[0-9A-Za-z]{36}$/.test(s)) return s.slice(4);
  const m = /^tks1-\d{1,3}-([A-Za-z0-9_-]{43})-[0-9a-f]{6}$/.exec(s);
  if (m) return m[1];
  return s;
}

/** [{form, needle: Buffer}] for one secret: clear, base64/base64url at the
 * three alignments (only the characters that the secret's bytes alone
 * decide), hex lower and upper, URL-encoded when that differs; with
 * window, every window of that many characters of the core in clear. */
export function secretForms(s, { window = 0 } = {}) {
  const core = secretCore(s);
  const bytes = Buffer.from(core, 'utf8');
  const out = [{ form: 'clear', needle: bytes }];
  const seen = new Set([core]);
  const add = (form, text) => {
    if (text.length >= 8 && !seen.has(text)) {
      seen.add(text);
      out.push({ form, needle: Buffer.from(text, 'latin1') });
    }
  };
  for (let o = 0; o < 3; o++) {
    let sub = bytes.subarray(o);
    sub = sub.subarray(0, sub.length - (sub.length % 3));
    add(`base64 (alignment ${o})`, sub.toString('base64'));
    add(`base64url (alignment ${o})`, sub.toString('base64url'));
  }
  add('hex', bytes.toString('hex'));
  add('HEX', bytes.toString('hex').toUpperCase());
  add('url-encoded', encodeURIComponent(core));
  if (window > 0 && window < core.length)
    for (let i = 0; i + window <= core.length; i++) add(`window ${i}..${i + window}`, core.slice(i, i + window));
  return out;
}

export function preview(s) {
  return `${s.slice(0, Math.min(8, Math.floor(s.length / 4)))}…(${s.length} chars)`;
}

// ---------------------------------------------------------------- where to look

function run(cmd, args, timeoutMs = 60000) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024, encoding: 'buffer' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args[0]}: ${stderr ? stderr.toString() : err.message}`));
      else resolve(stdout);
    });
  });
}

async function filesUnder(dir) {
  const out = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if (e.code === 'ENOENT') return out;
    throw e;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

async function pgDump(store) {
  try {
    return [['store dump (pg_dump)', await run('pg_dump', ['--no-owner', '--no-privileges', store])]];
  } catch (e) {
    // pg_dump missing or of another major version: a SELECT of every table.
    const tables = (await run('psql', [store, '-X', '-q', '-At', '-c', "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"]))
      .toString()
      .split('\n')
      .filter(Boolean);
    const out = [];
    for (const t of tables) out.push([`store table ${t} (psql)`, await run('psql', [store, '-X', '-q', '-At', '-c', `SELECT x::text FROM "${t}" x`])]);
    if (!out.length) throw new Error(`pg_dump failed (${e.message}) and psql found no table`);
    return out;
  }
}

/** [[where, Buffer]] of everything scanForSecrets looks at. */
async function gather(node, opts) {
  const blobs = [];
  const ignore = new Set(opts.ignoreFiles || ['root-token']);
  if (node.dataDir && opts.files !== false)
    for (const f of await filesUnder(node.dataDir)) if (!ignore.has(path.basename(f))) blobs.push([`file ${f}`, await readFile(f)]);
  if (opts.dump !== false) {
    if (node.backend === 'postgres' && node.store) blobs.push(...(await pgDump(node.store)));
    else if (node.dataDir) {
      const db = path.join(node.dataDir, 'tokend.db');
      if (blobs.some(([w]) => w === `file ${db}`)) blobs.push(['store dump (sqlite3 .dump)', await run('sqlite3', ['-readonly', db, '.dump'])]);
    }
  }
  if (opts.logs !== false) {
    const seen = new Set();
    for (const l of logsOf(node)) {
      blobs.push([`stdout of tokend serve (pid ${l.pid})`, Buffer.from(l.stdout(), 'utf8')]);
      blobs.push([`stderr of tokend serve (pid ${l.pid})`, Buffer.from(l.stderr(), 'utf8')]);
      seen.add(l.pid);
    }
    // a node object not started through lib/tokend.mjs but with accessors
    if (!seen.has(node.pid) && typeof node.stderr === 'function') {
      blobs.push([`stdout of tokend serve (pid ${node.pid})`, Buffer.from(node.stdout ? node.stdout() : '', 'utf8')]);
      blobs.push([`stderr of tokend serve (pid ${node.pid})`, Buffer.from(node.stderr(), 'utf8')]);
    }
  }
  for (const [i, extra] of (opts.extra || []).entries()) {
    const [where, data] = Array.isArray(extra) ? extra : [`extra ${i}`, extra];
    blobs.push([where, Buffer.isBuffer(data) ? data : Buffer.from(String(data), 'utf8')]);
  }
  const running = node.proc ? node.proc.exitCode === null && node.proc.signalCode === null : !!node.url;
  if (opts.events !== false && node.url && running) blobs.push(...(await eventBlobs(node, opts)));
  if (opts.eventBlobs) blobs.push(...opts.eventBlobs);
  return blobs;
}

function sameNode(origin, node) {
  if (!origin) return false;
  return (node.dataDir && origin.dataDir === node.dataDir) || (node.store && origin.store === node.store) || origin.url === node.url;
}

/** The events of every tenant the scan holds a token for, via the API. */
async function eventBlobs(node, opts) {
  const tokens = [node.token, ...(opts.tokens || [])];
  for (const e of registry.values()) if ((e.kind === 'tenant-admin' || e.kind === 'root') && sameNode(e.origin, node)) tokens.push(e.value);
  const out = [];
  const tenants = new Set();
  let sealed = false;
  // From an address of its own, so that a revoked token's 401 never
  // spends the failure budget of the address the tests use.
  const from = opts.from || '127.0.0.77';
  for (const token of [...new Set(tokens.filter(Boolean))]) {
    const who = await request(node, '/v1/whoami', { token, from, noteSecrets: false });
    if (who.status === 503) sealed = true;
    if (who.status !== 200 || tenants.has(who.json.tenant_id)) continue;
    tenants.add(who.json.tenant_id);
    const events = await allEvents(node, '', { token, from });
    out.push([`events of tenant ${who.json.tenant_id} (GET /v1/events, ${events.length} events)`, Buffer.from(JSON.stringify(events), 'utf8')]);
  }
  // A sealed (or starting) node serves no events; the store dump has them.
  if (!tenants.size && !sealed && opts.requireEvents !== false) throw new Error(`secret scan: no token of ${node.url} could read its events (pass opts.tokens or opts.events=false)`);
  return out;
}

// ---------------------------------------------------------------- the scan

/**
 * Look for secrets (default: seenSecrets()) in node's data dir, store dump,
 * logs and events. node: an instance from startTokend() (or {backend,
 * dataDir, store, url, token}). opts:
 *   files/dump/logs/events  false to leave that place out
 *   ignoreFiles  file names not scanned (default ['root-token'])
 *   tokens       more tokens to read events with (other tenants)
 *   extra        more [where, text|Buffer] to scan (CLI output...)
 *   window       also every window of this many characters, in clear
 * Returns [{secret (a preview), form, where, offset}], empty when clean.
 */
export async function scanForSecrets(node, secrets = seenSecrets(), opts = {}) {
  const blobs = await gather(node, opts);
  const findings = [];
  for (const s of new Set(secrets)) {
    for (const { form, needle } of secretForms(s, opts)) {
      for (const [where, data] of blobs) {
        const offset = data.indexOf(needle);
        if (offset >= 0) findings.push({ secret: preview(s), form, where, offset });
      }
    }
  }
  return findings;
}

/** Fail, naming each place, when scanForSecrets finds anything. With one
 * argument: every secret the suite has seen. */
export async function assertNoSecretIn(node, secrets = seenSecrets(), opts = {}) {
  const findings = await scanForSecrets(node, secrets, opts);
  assert.deepEqual(
    findings.map((f) => `${f.secret} in ${f.form} in ${f.where} at byte ${f.offset}`),
    [],
    `secret scan of ${node.url || node.dataDir}: ${findings.length} secret(s) found`,
  );
  return findings;
}

/**
 * The end of a suite, in one line: `after(() => stopAndScan(t))`. Reads the
 * events through the API while the node runs, stops it (SIGTERM; the exit
 * code must be 0 unless opts.exitCode says otherwise), then scans its data
 * dir, store dump and logs (with the lines written at the stop) and those
 * events. The node is stopped even when reading its events fails, so a
 * failing scan never leaves a process holding the test file open.
 */
export async function stopAndScan(node, secrets = seenSecrets(), opts = {}) {
  if (!node) return [];
  let events = [];
  let failed = null;
  const running = node.proc ? node.proc.exitCode === null && node.proc.signalCode === null : false;
  if (running && opts.events !== false)
    try {
      events = await eventBlobs(node, opts);
    } catch (e) {
      failed = e;
    }
  if (typeof node.stop === 'function') {
    const r = await node.stop();
    if (r) assert.equal(r.code, opts.exitCode ?? 0, `${node.url}: exit code at the stop\n${node.stderr ? node.stderr().slice(-2000) : ''}`);
  }
  if (failed) throw failed;
  return assertNoSecretIn(node, secrets, { ...opts, events: false, eventBlobs: events });
}
