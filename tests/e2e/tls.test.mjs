// tls.test.mjs: HTTPS (tls_cert_file, tls_key_file) and public_url against a
// real tokend, with certificates made by openssl in a temporary directory
// (a private CA and leaves for 127.0.0.1/localhost): a Node https client
// with the CA, plain HTTP to the TLS port, TLS 1.1 and CBC-only clients
// refused, SIGHUP reloading a new pair (seen by a new connection while a
// kept-alive one goes on) and a bad pair keeping the old one, node/tls_reload
// events, public_url in /ready, the CLI with TOKEND_CACERT, doctor's TLS
// finding, and the start-up errors (exit 2 naming the setting or file).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate, randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';

import { noteSecret } from './lib/secrets.mjs';
import { backends, freshDir, metric, parseMetrics, request, runCli, seenSecrets, serveExpectingExit, startTokend, stopAndScan, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

function openssl(args, cwd) {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 30000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`openssl ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/** A private CA (ca.pem, ca.key) in dir. */
async function makeCa(dir) {
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30', '-subj', '/CN=tokend e2e CA'], dir);
  await writeFile(path.join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
}

/** A leaf for localhost and 127.0.0.1 signed by the CA: name.pem, name.key. */
async function makeLeaf(dir, name, days) {
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}.tokend.test`], dir);
  await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-out', `${name}.pem`, '-days', String(days), '-extfile', 'ext.cnf'], dir);
  const pem = await readFile(path.join(dir, `${name}.pem`), 'utf8');
  return new X509Certificate(pem).fingerprint256;
}

/** A leaf for 127.0.0.1 that expires in seconds (openssl ca, which takes
 * an exact end date): name.pem, name.key. */
async function makeShortLeaf(dir, name, seconds) {
  await writeFile(path.join(dir, 'ca.cnf'), '[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = p\ncopy_extensions = copy\nunique_subject = no\n[p]\ncommonName = supplied\n');
  await writeFile(path.join(dir, 'index.txt'), '');
  await writeFile(path.join(dir, 'serial'), `${randomBytes(8).toString('hex')}\n`);
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}.tokend.test`, '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], dir);
  const end = new Date(Date.now() + seconds * 1000).toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z').slice(2);
  await openssl(['ca', '-batch', '-config', 'ca.cnf', '-cert', 'ca.pem', '-keyfile', 'ca.key', '-in', `${name}.csr`, '-out', `${name}.pem`, '-startdate', '250101000000Z', '-enddate', end], dir);
}

/** Replace dir/to with the content of dir/from at once (write, rename). */
async function install(dir, from, to, content) {
  const data = content !== undefined ? content : await readFile(path.join(dir, from));
  const tmp = path.join(dir, `.${to}.${randomBytes(4).toString('hex')}`);
  await writeFile(tmp, data, { mode: 0o600 });
  await rename(tmp, path.join(dir, to));
}

/** GET over HTTPS. opts: ca, token, agent (default: a fresh connection),
 * minVersion/maxVersion/ciphers. Resolves {status, json, fingerprint, socket, reused}. */
function httpsGet(port, pathname, opts = {}) {
  return new Promise((resolve, reject) => {
    const headers = { host: `127.0.0.1:${port}` };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (!opts.agent) headers.connection = 'close';
    const req = https.request(
      { host: '127.0.0.1', port, path: pathname, method: 'GET', headers, ca: opts.ca, agent: opts.agent || false },
      (res) => {
        const fingerprint = res.socket.getPeerCertificate().fingerprint256;
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
          resolve({ status: res.statusCode, json, text, fingerprint, socket: res.socket, reused: req.reusedSocket });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(30000, () => req.destroy(new Error(`HTTPS GET ${pathname}: no answer in time`)));
    req.on('error', reject);
    req.end();
  });
}

/** The base64 body of a PEM private key: a secret for the scan. */
async function noteKey(file) {
  const pem = await readFile(file, 'utf8');
  noteSecret(pem.split('\n').filter((l) => l && !l.startsWith('-----')).join(''), { kind: 'tls-key' });
}

/** The end of a TLS node: its events read over HTTPS (the library's
 * request() speaks plain HTTP), then the shared stop and secret scan. ca
 * null: the certificate no longer verifies, the events are left to the
 * store dump. */
async function stopAndScanTls(t, ca) {
  if (!t) return;
  const extra = [];
  if (ca && t.proc.exitCode === null && t.proc.signalCode === null) {
    const events = [];
    let cursor = null;
    for (let page = 0; page < 1000; page++) {
      const r = await httpsGet(t.port, `/v1/events?limit=1000${cursor !== null ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { ca, token: t.token });
      assert.equal(r.status, 200, r.text);
      events.push(...r.json.events);
      if (r.json.next_cursor === null) break;
      cursor = r.json.next_cursor;
    }
    assert.ok(events.length > 0, 'the node has events');
    extra.push([`events (GET /v1/events over HTTPS, ${events.length} events)`, JSON.stringify(events)]);
  }
  await stopAndScan(t, seenSecrets(), { events: false, extra });
}

/** A TLS handshake only; resolves {ok: true, protocol, cipher} or {ok: false, error}. */
function handshake(port, opts) {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...opts });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ ok: false, error: new Error('handshake timed out') });
    }, 20000);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      const r = { ok: true, protocol: s.getProtocol(), cipher: s.getCipher().name };
      s.end();
      resolve(r);
    });
    s.once('error', (error) => {
      clearTimeout(timer);
      resolve({ ok: false, error });
    });
  });
}

async function doctorTls(port, ca, token) {
  const r = await httpsGet(port, '/v1/sys/doctor', { ca, token });
  assert.equal(r.status, 200, r.text);
  return r.json.tls;
}

for (const backend of backends()) {
  describe(`tls (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t, dir, ca, fpA, fpB, port;
    before(async () => {
      dir = await freshDir('tls');
      await makeCa(dir);
      fpA = await makeLeaf(dir, 'a', 30);
      fpB = await makeLeaf(dir, 'b', 60);
      await noteKey(path.join(dir, 'a.key'));
      await noteKey(path.join(dir, 'b.key'));
      await install(dir, 'a.pem', 'live.pem');
      await install(dir, 'a.key', 'live.key');
      ca = await readFile(path.join(dir, 'ca.pem'));
      t = await startTokend({ backend, args: ['--tls-cert-file', path.join(dir, 'live.pem'), '--tls-key-file', path.join(dir, 'live.key')] });
      port = t.port;
    });
    after(() => stopAndScanTls(t, ca));

    it('a Node https client with the CA: /health, /ready with public_url, the certificate served', async () => {
      const h = await httpsGet(port, '/health', { ca });
      assert.equal(h.status, 200);
      assert.deepEqual(h.json, { status: 'ok' });
      assert.equal(h.fingerprint, fpA);
      const r = await httpsGet(port, '/ready', { ca });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.public_url, `https://127.0.0.1:${port}`);
      assert.match(t.stderr(), /listening on port \d+ \(listen=127\.0\.0\.1:0, HTTPS, public_url https:\/\/127\.0\.0\.1:\d+\)/);
      assert.doesNotMatch(t.stderr(), /WITHOUT TLS/);
      // TLS 1.3 and 1.2 with an AEAD cipher
      const v13 = await handshake(port, { ca, minVersion: 'TLSv1.3' });
      assert.equal(v13.ok, true, String(v13.error));
      assert.equal(v13.protocol, 'TLSv1.3');
      const v12 = await handshake(port, { ca, maxVersion: 'TLSv1.2' });
      assert.equal(v12.ok, true, String(v12.error));
      assert.equal(v12.protocol, 'TLSv1.2');
      assert.match(v12.cipher, /^ECDHE-ECDSA-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
    });

    it('a client without the CA refuses the certificate', async () => {
      await assert.rejects(httpsGet(port, '/health', {}), (err) => /self[- ]signed|unable to verify|UNABLE_TO_GET_ISSUER|SELF_SIGNED/i.test(`${err.code} ${err.message}`));
    });

    it('plain HTTP to the TLS port fails cleanly, and the node goes on', async () => {
      const t0 = Date.now();
      const err = await new Promise((resolve) => {
        const req = http.request({ host: '127.0.0.1', port, path: '/health', agent: false }, (res) => {
          res.resume();
          resolve(new Error(`answered HTTP ${res.statusCode}`));
        });
        req.setTimeout(20000, () => req.destroy(new Error('no answer in 20 s')));
        req.on('error', resolve);
        req.end();
      });
      assert.match(`${err.code} ${err.message}`, /ECONNRESET|socket hang up|HPE_|Parse Error/, String(err.stack));
      assert.ok(Date.now() - t0 < 15000, 'closed at once, not after a timeout');
      const h = await httpsGet(port, '/health', { ca });
      assert.equal(h.status, 200);
    });

    it('TLS 1.1 and CBC-only clients are refused by the server (counted as failed handshakes)', async () => {
      const before1 = await doctorTls(port, ca, t.token);
      const old = await handshake(port, { ca, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
      assert.equal(old.ok, false, 'a TLS 1.1 handshake succeeded');
      assert.notEqual(old.error.code, 'ERR_SSL_NO_PROTOCOLS_AVAILABLE', 'the client itself could not offer TLS 1.1');
      const cbc = await handshake(port, { ca, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384' });
      assert.equal(cbc.ok, false, `a CBC-only client got ${cbc.cipher}`);
      // the server saw both handshakes fail
      await waitFor(async () => (await doctorTls(port, ca, t.token)).handshakes_failed >= before1.handshakes_failed + 2, { message: 'two failed handshakes counted' });
      const after1 = await doctorTls(port, ca, t.token);
      assert.ok(after1.handshakes_ok > before1.handshakes_ok);
    });

    it('SIGHUP: a new connection gets the new certificate while a kept-alive one goes on', async () => {
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
      try {
        const first = await httpsGet(port, '/health', { agent });
        assert.equal(first.status, 200);
        assert.equal(first.fingerprint, fpA);
        const sock = first.socket;
        await install(dir, 'b.pem', 'live.pem');
        await install(dir, 'b.key', 'live.key');
        t.proc.kill('SIGHUP');
        await waitFor(async () => (await httpsGet(port, '/health', { ca })).fingerprint === fpB, { message: 'a new connection to present certificate b' });
        const again = await httpsGet(port, '/health', { agent });
        assert.equal(again.status, 200);
        assert.equal(again.reused, true, 'the kept-alive connection was reused');
        assert.equal(again.socket, sock);
        assert.equal(again.fingerprint, fpA, 'the old connection keeps its session');
      } finally {
        agent.destroy();
      }
      const ev = await waitFor(async () => {
        const r = await httpsGet(port, '/v1/events?kind=node&action=tls_reload&outcome=ok', { ca, token: t.token });
        return r.status === 200 && r.json.events.length >= 1 && r.json.events[0];
      }, { message: 'the node/tls_reload ok event' });
      assert.equal(ev.source, 'signal');
      const detail = typeof ev.detail === 'string' ? JSON.parse(ev.detail) : ev.detail;
      assert.equal(detail.fingerprint_sha256, fpB.replace(/:/g, '').toLowerCase());
      assert.equal(detail.cert_file, path.join(dir, 'live.pem'));
      assert.match(t.stderr(), /tls: reloaded .*live\.pem/);
      const d = await doctorTls(port, ca, t.token);
      assert.equal(d.reloads_ok, 1);
      assert.equal(d.subject, 'CN=b.tokend.test');
      // the same on /metrics
      const m = parseMetrics((await httpsGet(port, '/metrics', { ca })).text);
      assert.equal(metric(m, 'tokend_tls_reloads_total', { result: 'ok' }), 1);
      assert.equal(metric(m, 'tokend_tls_reloads_total', { result: 'failed' }), 0);
      assert.ok(metric(m, 'tokend_tls_handshakes_total', { result: 'ok' }) >= 1);
      assert.ok(metric(m, 'tokend_tls_handshakes_total', { result: 'failed' }) >= 2, 'the refused TLS 1.1 and CBC clients');
      const left = metric(m, 'tokend_tls_cert_expiry_seconds');
      assert.ok(left > 59 * 86400 && left <= 60 * 86400, `expiry in ${left} s (60 days)`);
      assert.equal(metric(m, 'tokend_tls_cert_not_after_seconds'), Math.floor(Date.parse(d.not_after) / 1000));
    });

    it('a bad pair on SIGHUP keeps the old certificate serving and records node/tls_reload error', async () => {
      await install(dir, null, 'live.key', 'not a key\n');
      t.proc.kill('SIGHUP');
      const ev = await waitFor(async () => {
        const r = await httpsGet(port, '/v1/events?kind=node&action=tls_reload&outcome=error', { ca, token: t.token });
        return r.status === 200 && r.json.events.length >= 1 && r.json.events[0];
      }, { message: 'the node/tls_reload error event' });
      assert.match(ev.message, /TLS reload failed, the previous certificate still serves: tls_key_file .*live\.key: no PEM private key/);
      const detail = typeof ev.detail === 'string' ? JSON.parse(ev.detail) : ev.detail;
      assert.equal(detail.error, 'tls_key_unusable');
      assert.equal(detail.fingerprint_sha256, fpB.replace(/:/g, '').toLowerCase(), 'the detail names the certificate still in use');
      const h = await httpsGet(port, '/health', { ca });
      assert.equal(h.status, 200);
      assert.equal(h.fingerprint, fpB);
      // a's certificate with b's key: refused too
      await install(dir, 'a.pem', 'live.pem');
      await install(dir, 'b.key', 'live.key');
      t.proc.kill('SIGHUP');
      await waitFor(async () => (await doctorTls(port, ca, t.token)).reloads_failed >= 2, { message: 'the second failed reload' });
      assert.equal(metric(parseMetrics((await httpsGet(port, '/metrics', { ca })).text), 'tokend_tls_reloads_total', { result: 'failed' }), 2);
      assert.match(t.stderr(), /tls: reload failed; still serving the previous certificate .*tls_key_file .*live\.key is not the key of the certificate/);
      assert.equal((await httpsGet(port, '/health', { ca })).fingerprint, fpB);
      await install(dir, 'b.pem', 'live.pem');
      // the key never reaches the log or the events
      const key = await readFile(path.join(dir, 'b.key'), 'utf8');
      const body = key.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
      assert.ok(!t.stderr().includes(body.slice(0, 40)));
      const all = await httpsGet(port, '/v1/events?kind=node&limit=100', { ca, token: t.token });
      assert.ok(!all.text.includes(body.slice(0, 40)));
    });

    it('the CLI over https: TOKEND_CACERT trusts the private CA; without it, a hint', async () => {
      const env = { TOKEND_ADDR: `https://127.0.0.1:${port}`, TOKEND_TOKEN: t.token };
      const ok = await runCli(['status'], { env: { ...env, TOKEND_CACERT: path.join(dir, 'ca.pem') } });
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /^health +ok/m);
      const bad = await runCli(['status'], { env });
      assert.equal(bad.code, 3, bad.stdout + bad.stderr);
      assert.match(bad.stderr, /set TOKEND_CACERT to the PEM file of its CA/);
      const plain = await runCli(['status'], { env: { ...env, TOKEND_ADDR: `http://127.0.0.1:${port}` } });
      assert.equal(plain.code, 3);
      assert.match(plain.stderr, /TOKEND_ADDR must start with https:\/\//);
      const doc = await runCli(['doctor', '--json'], { env: { ...env, TOKEND_CACERT: path.join(dir, 'ca.pem') } });
      const list = JSON.parse(doc.stdout);
      const f = list.find((x) => x.check === 'tls');
      assert.equal(f.status, 'ok', doc.stdout);
      assert.match(f.message, /The TLS certificate .*live\.pem \(CN=b\.tokend\.test\) is valid until .* \((59|60) days\)\./);
      assert.equal(list.find((x) => x.check === 'reachable').status, 'ok');
      assert.equal(list.find((x) => x.check === 'tls-reload').status, 'warn', 'failed reloads are a finding');
    });
  });
}

describe('tls: start-up errors, public_url, the warnings', { timeout: SUITE_TIMEOUT_MS }, () => {
  let dir;
  before(async () => {
    dir = await freshDir('tls-start');
    await makeCa(dir);
    await makeLeaf(dir, 'a', 30);
    await makeLeaf(dir, 'b', 5);
    await noteKey(path.join(dir, 'a.key'));
    await noteKey(path.join(dir, 'b.key'));
    await writeFile(path.join(dir, 'garbage.pem'), 'garbage\n');
  });
  const p = (f) => path.join(dir, f);

  for (const [what, args, code, re] of [
    ['garbage in tls_cert_file', ['--tls-cert-file', 'garbage.pem', '--tls-key-file', 'a.key'], 'tls_cert_unusable', /tls_cert_file .*garbage\.pem: no PEM certificate/],
    ['a missing tls_cert_file', ['--tls-cert-file', 'nope.pem', '--tls-key-file', 'a.key'], 'tls_cert_unusable', /tls_cert_file .*nope\.pem cannot be read: No such file/],
    ['a certificate as the key', ['--tls-cert-file', 'a.pem', '--tls-key-file', 'a.pem'], 'tls_key_unusable', /tls_key_file .*a\.pem: no PEM private key/],
    ['the key of another certificate', ['--tls-cert-file', 'a.pem', '--tls-key-file', 'b.key'], 'tls_key_mismatch', /tls_key_file .*b\.key is not the key of the certificate in tls_cert_file .*a\.pem/],
  ]) {
    it(`${what}: exit 2, ${code}, naming the file`, async () => {
      const full = args.map((a, i) => (i % 2 ? p(a) : a));
      const r = await serveExpectingExit({ args: full });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`cannot start: ${code}: `));
      assert.match(r.stderr, re);
    });
  }

  it('one of the two TLS settings alone: exit 2 naming the missing one', async () => {
    const r = await serveExpectingExit({ args: ['--tls-cert-file', p('a.pem')] });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /tokend serve: flag --tls_cert_file: tls_cert_file is set but tls_key_file is not: set both \(HTTPS\) or neither/);
    const k = await serveExpectingExit({ env: { TOKEND_TLS_KEY_FILE: p('a.key') } });
    assert.equal(k.code, 2);
    assert.match(k.stderr, /environment TOKEND_TLS_KEY_FILE: tls_key_file is set but tls_cert_file is not/);
  });

  it('an invalid public_url: exit 2 naming it and why', async () => {
    for (const [url, why] of [
      ['tokend.example.com', /must start with https:\/\/ or http:\/\//],
      ['https://tokend.example.com/?x=1', /must not have a query/],
      ['https://user@tokend.example.com', /must not carry a user name/],
    ]) {
      const r = await serveExpectingExit({ args: ['--public-url', url] });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /tokend serve: flag --public_url: public_url /);
      assert.match(r.stderr, why);
    }
  });

  it('public_url set: normalized in /ready; a certificate expiring soon: a warning at start and in doctor', async () => {
    const t = await startTokend({ args: ['--public-url', 'HTTPS://Tokend.Example.COM:443/base/', '--tls-cert-file', p('b.pem'), '--tls-key-file', p('b.key')] });
    try {
      const ca = await readFile(p('ca.pem'));
      const r = await httpsGet(t.port, '/ready', { ca });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.public_url, 'https://tokend.example.com/base');
      assert.match(t.stderr(), /warn +tls: the certificate in .*b\.pem expires at .*, in 1[01]\d hours: renew it and send SIGHUP/);
      const doc = await runCli(['doctor', '--json'], { env: { TOKEND_ADDR: `https://localhost:${t.port}`, TOKEND_TOKEN: t.token, TOKEND_CACERT: p('ca.pem') } });
      const f = JSON.parse(doc.stdout).find((x) => x.check === 'tls');
      assert.equal(f.status, 'warn', doc.stdout);
      assert.match(f.message, /expires at .*, in 4 days and \d+ hours\./);
      assert.match(f.next_step, /send SIGHUP to tokend/);
    } finally {
      await stopAndScanTls(t, await readFile(p('ca.pem')));
    }
  });

  it('a certificate that expires while the node runs: doctor fails the tls check', async () => {
    await makeShortLeaf(dir, 'short', 20);
    await noteKey(p('short.key'));
    const t = await startTokend({ args: ['--tls-cert-file', p('short.pem'), '--tls-key-file', p('short.key')] });
    try {
      const ca = await readFile(p('ca.pem'));
      const env = { TOKEND_ADDR: `https://127.0.0.1:${t.port}`, TOKEND_TOKEN: t.token, TOKEND_CACERT: p('ca.pem') };
      const before1 = JSON.parse((await runCli(['doctor', '--json'], { env })).stdout).find((x) => x.check === 'tls');
      assert.equal(before1.status, 'warn');
      // the node keeps serving it; clients check the date themselves
      await waitFor(async () => (await doctorTls(t.port, ca, t.token).catch(() => null)) === null, { timeoutMs: 40000, intervalMs: 500, message: 'the certificate to expire' });
      const insecure = new https.Agent({ rejectUnauthorized: false });
      const d = await new Promise((resolve, reject) => {
        https.get({ host: '127.0.0.1', port: t.port, path: '/v1/sys/doctor', agent: insecure, headers: { authorization: `Bearer ${t.token}` } }, (res) => {
          let b = '';
          res.on('data', (c) => (b += c));
          res.on('end', () => resolve(JSON.parse(b)));
        }).on('error', reject);
      });
      assert.ok(d.tls.expires_in <= 0, JSON.stringify(d.tls));
      // the CLI refuses it too (libcurl checks the date): doctor says why,
      // from the certificate read over a connection that sends nothing
      const r = await runCli(['doctor', '--json'], { env });
      assert.equal(r.code, 3, r.stdout + r.stderr);
      const list = JSON.parse(r.stdout);
      assert.equal(list.find((x) => x.check === 'reachable').status, 'fail');
      const f = list.find((x) => x.check === 'tls');
      assert.equal(f?.status, 'fail', r.stdout);
      assert.match(f.message, /The TLS certificate tokend presents \(.*CN ?= ?short\.tokend\.test.*\) expired at 20\d\d-/);
      assert.match(f.next_step, /send SIGHUP to tokend/);
    } finally {
      await stopAndScanTls(t, null); // expired: no verified connection reads its events
    }
  });

  it('plain HTTP on a non-loopback address: starts, with a loud warning', async () => {
    const t = await startTokend({ listen: '0.0.0.0:0' });
    try {
      assert.match(t.stderr(), /SECURITY WARNING: listening on 0\.0\.0\.0:0, not a loopback address, WITHOUT TLS/);
      assert.match(t.stderr(), /public_url is not set and listen 0\.0\.0\.0:0 names no host: using http:\/\/localhost:\d+/);
      const r = await request(`http://127.0.0.1:${t.port}`, '/ready');
      assert.equal(r.status, 200);
      assert.equal(r.json.public_url, `http://localhost:${t.port}`);
    } finally {
      await stopAndScan(t);
    }
  });
});
