// attack.test.mjs: regressions found by attacking the merged result of
// issue 13 (limits combined, hostile headers, stalled stores, crashes).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { api, rawExchange, startTokend, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

describe('attack: the Host check cannot be skipped', { timeout: SUITE_TIMEOUT_MS }, () => {
  let t;
  before(async () => {
    t = await startTokend({});
  });
  after(async () => {
    if (t) assert.equal((await t.stop()).code, 0);
  });

  const get = (head) => rawExchange(t, `GET /health HTTP/1.1\r\n${head}Connection: close\r\n\r\n`);

  it('refuses "Host : name" (a space before the colon) instead of treating it as no Host', async () => {
    // libmicrohttpd files that header under another name; the Host check then
    // saw no Host at all and let any name through.
    const r = await get('Host : attacker.example\r\n');
    assert.equal(r.response?.status, 400, r.raw);
    assert.equal(r.response.json.error, 'missing_host', r.raw);
    assert.equal(r.response.json.field, 'Host');
  });

  it('refuses an HTTP/1.1 request with no Host (RFC 9112 §3.2); HTTP/1.0 stays answered', async () => {
    const r = await get('');
    assert.equal(r.response?.status, 400, r.raw);
    assert.equal(r.response.json.error, 'missing_host', r.raw);
    const old = await rawExchange(t, 'GET /health HTTP/1.0\r\n\r\n');
    assert.equal(old.response?.status, 200, old.raw);
  });

  it('keeps refusing the neighbours of a loopback name (trailing dot, short forms, odd ports, userinfo)', async () => {
    for (const host of ['127.0.0.1.', 'localhost.', 'LOCALHOST.:1', '127.1', '127.0.0.1:045827', '127.0.0.1 ', 'attacker.example', '[::1', '127.0.0.1@attacker.example']) {
      const r = await get(`Host: ${host}\r\n`);
      assert.ok([400, 421].includes(r.response?.status), `Host: ${JSON.stringify(host)} -> ${r.raw.slice(0, 200)}`);
    }
    for (const host of ['LocalHost', `127.0.0.1:${t.port}`, '127.9.9.9', '[::1]', '[::ffff:127.0.0.1]:1']) {
      const r = await get(`Host: ${host}\r\n`);
      assert.equal(r.response?.status, 200, `Host: ${host} -> ${r.raw.slice(0, 200)}`);
    }
    const abs = await rawExchange(t, `GET http://127.0.0.1:${t.port}@attacker.example/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    assert.equal(abs.response?.status, 421, abs.raw);
    const w = await api(t, '/v1/whoami');
    assert.equal(w.status, 200, w.text);
  });
});
