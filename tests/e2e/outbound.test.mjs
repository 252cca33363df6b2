// outbound.test.mjs: the outbound HTTP client's settings at start and its
// place in the shutdown order (the client itself is unit-tested in
// tests/unit/test_outbound.c against a loopback server).
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import { backends, freshDir, serveExpectingExit, startTokend, stopAndScan, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';

for (const backend of backends()) {
  describe(`outbound settings (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    it('an unreadable outbound_ca_file or a malformed outbound_proxy stops the start (exit 2), naming the setting', async () => {
      const ca = await serveExpectingExit({ backend, args: ['--outbound-ca-file', '/nonexistent/ca.pem'] });
      assert.equal(ca.code, 2, ca.stderr);
      assert.match(ca.stderr, /outbound_ca_file \/nonexistent\/ca\.pem is not a readable file/);
      assert.doesNotMatch(ca.stdout, /listening/);
      const px = await serveExpectingExit({ backend, args: ['--outbound-proxy', 'not a proxy'] });
      assert.equal(px.code, 2, px.stderr);
      assert.match(px.stderr, /outbound_proxy is not a proxy URL/);
      const bad = await serveExpectingExit({ backend, args: ['--outbound-max-concurrent', '0'] });
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /outbound_max_concurrent must be an integer from 1 to 10000/);
    });

    it('a CA file without a certificate is refused; with every outbound setting given, tokend starts, answers and stops cleanly (exit 0)', async (tc) => {
      const bundle = '/etc/ssl/certs/ca-certificates.crt'; // a PEM file that exists on Debian
      const notPem = path.join(await freshDir('ca'), 'ca.pem');
      await writeFile(notPem, 'not a certificate\n');
      const noPem = await serveExpectingExit({ backend, args: ['--outbound-ca-file', notPem] });
      assert.equal(noPem.code, 2, noPem.stderr);
      assert.match(noPem.stderr, /holds no PEM certificate/);
      const t = await startTokend({
        backend,
        args: ['--outbound-connect-timeout', '2', '--outbound-timeout', '5', '--outbound-max-response', '65536',
          '--outbound-max-concurrent', '4', '--outbound-ca-file', bundle, '--outbound-proxy', 'http://127.0.0.1:9'],
      });
      tc.after(() => t.stop('SIGKILL').catch(() => {}));
      await stopAndScan(t); // exit 0, and no secret left anywhere
    });
  });
}
