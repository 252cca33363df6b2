// bench/refresh.mjs: the refresh engine's throughput (issue 18, Benchmark),
// driven by bench/refresh.sh. Usage:
//
//   node bench/refresh.mjs BIN N STORE_URL_OR_EMPTY TMPDIR CONCURRENCY
//
// 1. A fast loopback token endpoint (tests/e2e/lib/engineupstream.mjs:
//    rotation, an hour's tokens, nothing noted for a secret scan).
// 2. An importer node (refresh_concurrency 0: it refreshes nothing) imports
//    N connections whose tokens expire within a minute, so that all of them
//    are due when step 3 starts; then it stops.
// 3. A node with the engine on starts on the same store: the time from its
//    listening line until the endpoint has redeemed N refresh tokens and the
//    node has committed them, its CPU time (utime + stime of
//    /proc/PID/stat) and its peak RSS (VmHWM) are the figures. Every
//    connection must be refreshed exactly once (no refresh token presented
//    twice).
//
// Prints one JSON line with the figures.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startEngineUpstream } from '../tests/e2e/lib/engineupstream.mjs';

const [bin, nArg, storeArg, tmp, concArg] = process.argv.slice(2);
const N = Number(nArg);
const store = storeArg || `sqlite:${path.join(tmp, 'data', 'tokend.db')}`;
const dataDir = path.join(tmp, 'data');
const here = path.dirname(fileURLToPath(import.meta.url));
void here;

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
const ticks = 100; // sysconf(_SC_CLK_TCK) on Linux

const children = new Set();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

function serve(args) {
  const p = spawn(bin, ['serve', '--dev', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--store', store, '--access-log=false', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH },
  });
  children.add(p);
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  const port = new Promise((resolve, reject) => {
    const t = setInterval(() => {
      const m = /listening on port (\d+)/.exec(out);
      if (m) {
        clearInterval(t);
        resolve(Number(m[1]));
      }
    }, 10);
    p.on('exit', (c) => {
      clearInterval(t);
      reject(new Error(`tokend exited ${c}: ${err.slice(-2000)}`));
    });
  });
  return { p, port, err: () => err };
}

function req(port, token, method, pathname, body) {
  return new Promise((resolve, reject) => {
    const data = body ? JSON.stringify(body) : null;
    const r = http.request({ host: '127.0.0.1', port, method, path: pathname, agent, headers: { authorization: `Bearer ${token}`, ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}) } }, (res) => {
      let t = '';
      res.on('data', (d) => (t += d));
      res.on('end', () => resolve({ status: res.statusCode, text: t, json: t && t[0] === '{' ? JSON.parse(t) : null }));
    });
    r.on('error', reject);
    if (data) r.write(data);
    r.end();
  });
}

function stop(n) {
  return new Promise((resolve) => {
    if (n.p.exitCode !== null) return resolve();
    n.p.once('exit', resolve);
    n.p.kill('SIGTERM');
  });
}

const cpu = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / ticks; // utime, stime (fields 14, 15)
};
const status = (pid, key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

const clientId = 'bench-client';
const clientSecret = 'bench-client-secret-not-a-real-one';
const up = await startEngineUpstream({ clientId, clientSecret, quiet: true });
up.behave({ kind: 'ok', rotate: true, expiresIn: 3600 });

// ---- import ----
const imp = serve(['--refresh-concurrency', '0', '--store-pool', '16', '--threads', '4']);
const ip = await imp.port;
const token = readFileSync(path.join(dataDir, 'root-token'), 'utf8').trim();
const a = await req(ip, token, 'POST', '/v1/provider-apps', { provider: 'generic-oauth2', name: 'bench', client_id: clientId, client_secret: clientSecret, scopes: ['read'], token_url: up.url, client_auth: 'client_secret_post' });
if (a.status !== 201) throw new Error(a.text);
const t0 = Date.now();
let next = 0;
async function importer() {
  while (next < N) {
    const i = next++;
    const r = await req(ip, token, 'POST', '/v1/connections', { app_id: a.json.id, label: `b${i}`, access_token: `bench-at-${i}`, refresh_token: up.issue(`b${i}`), expires_at: new Date(Date.now() + 30000 + (i % 30) * 1000).toISOString(), scopes: ['read'] });
    if (r.status !== 201) throw new Error(r.text);
  }
}
try {
  await Promise.all(Array.from({ length: 16 }, importer));
} catch (e) {
  console.error(e);
  process.exit(1);
}
const importS = (Date.now() - t0) / 1000;
await stop(imp);
if (up.stats().requests !== 0) throw new Error('the importer refreshed');

// ---- the engine ----
const t1 = Date.now();
const node = serve(['--refresh-concurrency', concArg || '64', '--refresh-per-provider', concArg || '64', '--outbound-max-concurrent', String(Math.max(64, Number(concArg || 64))), '--store-pool', process.env.BENCH_POOL || '16']);
const port = await node.port;
const tListen = Date.now();
const cpu0 = cpu(node.p.pid);
let rssMax = 0;
let doneAt = 0;
const deadline = Date.now() + 30 * 60 * 1000;
for (;;) {
  rssMax = Math.max(rssMax, status(node.p.pid, 'VmRSS'));
  if (up.stats().redeemed >= N) {
    doneAt = Date.now();
    break;
  }
  if (Date.now() > deadline) throw new Error(`only ${up.stats().redeemed} of ${N} in 30 min`);
  await new Promise((r) => setTimeout(r, 50));
}
// the commits trail the answers: wait for tokend_connections{status="ok"} to count N
let committedAt = 0;
for (;;) {
  const m = await req(port, token, 'GET', '/metrics');
  const ok = /^tokend_connections\{status="ok"\} (\d+)/m.exec(m.text);
  if (ok && Number(ok[1]) >= N) {
    committedAt = Date.now();
    break;
  }
  if (Date.now() > deadline) throw new Error('commits did not reach N');
  await new Promise((r) => setTimeout(r, 100));
}
const cpu1 = cpu(node.p.pid);
const hwm = status(node.p.pid, 'VmHWM');
const rss = status(node.p.pid, 'VmRSS');
const m = (await req(port, token, 'GET', '/metrics')).text;
const attempts = Number((/^tokend_refresh_attempts_total\{outcome="ok",provider="generic-oauth2"\} (\d+)/m.exec(m) || [0, 0])[1]);
const p = (q) => {
  // a histogram quantile from the cumulative buckets
  const rows = [...m.matchAll(/^tokend_refresh_duration_seconds_bucket\{le="([^"]+)"\} (\d+)/gm)].map((x) => [x[1] === '+Inf' ? Infinity : Number(x[1]), Number(x[2])]);
  const total = rows.at(-1)[1];
  return rows.find(([, c]) => c >= q * total)[0];
};
await stop(node);
const halves = /per refresh (\d+) us preparing, (\d+) us completing/.exec(node.err()) || [0, 0, 0];
await up.close();
const st = up.stats();
const secs = (doneAt - tListen) / 1000;
console.log(
  JSON.stringify({
    n: N,
    store: store.startsWith('sqlite') ? 'sqlite' : 'postgres',
    concurrency: Number(concArg || 64),
    import_s: importS,
    start_s: (tListen - t1) / 1000,
    refresh_s: secs,
    committed_s: (committedAt - tListen) / 1000,
    refreshes_per_s: Math.round(N / secs),
    cpu_s: cpu1 - cpu0,
    cpu_us_per_refresh: Math.round(((cpu1 - cpu0) / N) * 1e6),
    rss_peak_kb: Math.max(hwm, rssMax),
    rss_end_kb: rss,
    attempts_ok: attempts,
    upstream_requests: st.requests,
    redeemed: st.redeemed,
    reused: st.reused,
    presented_twice: st.presentedTwice,
    prepare_us: Number(halves[1]),
    complete_us: Number(halves[2]),
    duration_p50_le_s: p(0.5),
    duration_p99_le_s: p(0.99),
  }),
);
process.exit(0);
