// Attacks on the admin console (issue 17), each a finding turned into a
// test: CSRF of the pre-session forms, the route walk of every console form,
// redirects and headers, page limits, secrets. Both backends.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';

import { api, backends, startTokend, stopAndScan, storeSql, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { CookieJar, browserRequest } from './lib/oauthflow.mjs';
import { consoleSignIn, textOf } from './lib/console.mjs';

const PLANTED = 'A'.repeat(43); // a pre-session CSRF value another page chose

/** Fill a console route pattern's {params} with an id-like value. */
function fill(pattern, id) {
  return pattern.replace(/\{[a-z_]+\}/g, id);
}

for (const backend of backends()) {
  describe(`console attack (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    after(async () => {
      if (t) await stopAndScan(t);
    });

    it('sign-in CSRF: a planted pre-session cookie and a post from another site (Origin null, Sec-Fetch-Site) make no session', async () => {
      t = await startTokend({ backend });
      const url = new URL('/console/login', t.url).href;
      const planted = { cookie: `tokend_console_csrf=${PLANTED}` };
      // a page on another port of this host (same-site) that hides its
      // origin (no-referrer): Origin null, Sec-Fetch-Site same-site
      for (const site of ['same-site', 'cross-site']) {
        const res = await browserRequest(url, {
          method: 'POST',
          headers: { ...planted, origin: 'null', 'sec-fetch-site': site },
          form: { csrf: PLANTED, token: t.token, next: '/console/node' },
        });
        assert.equal(res.status, 403, `${site}: ${res.status}`);
        assert.ok(!String(res.headers['set-cookie'] || '').includes('tokend_console=tkw_'), site);
        assert.match(textOf(res.text), /another site/);
      }
      // the console's own form (same origin; Origin null under no-referrer) signs in
      const ok = await browserRequest(url, {
        method: 'POST',
        headers: { ...planted, origin: 'null', 'sec-fetch-site': 'same-origin' },
        form: { csrf: PLANTED, token: t.token, next: '/console/node' },
      });
      assert.equal(ok.status, 303, ok.text);
      // a session form posted from another origin is refused the same way
      const c = await consoleSignIn(t);
      const before = (await api(t, '/v1/operator-tokens')).json.tokens.length;
      const res = await c.postRaw('/console/tokens', { name: 'x-site', role: 'viewer', csrf: await c.csrf() }, { headers: { origin: 'null', 'sec-fetch-site': 'same-site' } });
      assert.equal(res.status, 403);
      assert.equal((await api(t, '/v1/operator-tokens')).json.tokens.length, before);
    });
  });
}
