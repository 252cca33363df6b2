// The console's node page and unseal form (issue 17): health, readiness,
// seal status, data key version, rewrap progress and doctor findings for a
// node admin; a viewer sees no doctor and no buttons; a node sealed through
// the page is unsealed through the form one share at a time (wrong share,
// missing CSRF, progress, the redirect to sign in), and no share is ever on
// a page.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';

import { api, backends, createTenant, request, startTokend, stopAndScan, waitFor, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { secretCore } from './lib/secrets.mjs';
import { CookieJar, browserRequest } from './lib/oauthflow.mjs';
import { ConsoleSession, byId, consoleSignIn, textOf } from './lib/console.mjs';

/** Every page a test saw, to assert that no share is in any of them. */
const pages = [];
function seen(pg) {
  pages.push(`${pg.url} ${pg.status} ${JSON.stringify(pg.headers)}\n${pg.text}`);
  return pg;
}

for (const backend of backends()) {
  describe(`console node page (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    after(async () => {
      if (t) await stopAndScan(t);
    });

    it('shows a node admin health ok, ready, unsealed, the data key version and doctor findings, with the seal and rewrap forms', async () => {
      t = await startTokend({ backend });
      const c = await consoleSignIn(t);
      const pg = seen(await c.get('/console/node'));
      assert.equal(pg.status, 200, pg.text);
      assert.ok(Buffer.byteLength(pg.text) < 100 * 1024);
      assert.match(textOf(byId(pg.text, 'health')), /\bok\b/);
      assert.match(textOf(byId(pg.text, 'readiness')), /\bready\b/);
      assert.match(textOf(byId(pg.text, 'seal-status')), /^unsealed$/);
      const st = (await request(t, '/v1/sys/seal-status')).json;
      assert.equal(textOf(byId(pg.text, 'data-key-version')), String(st.data_version));
      assert.ok(byId(pg.text, 'rewrap'), 'the rewrap card');
      const doctor = byId(pg.text, 'doctor');
      assert.ok(doctor, 'the doctor findings');
      const findings = doctor.match(/class="finding\b/g) || [];
      assert.ok(findings.length >= 3, doctor);
      assert.match(textOf(doctor), /Dev mode is on/);
      assert.match(textOf(doctor), /clock is within/);
      assert.match(pg.text, /<form method="post" action="\/console\/node\/seal" id="seal"/);
      assert.match(pg.text, /<form method="post" action="\/console\/node\/rewrap" id="rewrap-start"/);
    });

    it('starts a rewrap from the form and shows its progress', async () => {
      const c = await consoleSignIn(t);
      const pg = await c.get('/console/node');
      const res = await c.submit(pg, '/console/node/rewrap');
      assert.equal(res.status, 303, res.text);
      assert.equal(res.headers.location, '/console/node#rewrap');
      const evs = (await api(t, '/v1/events?kind=keyring&action=rewrap_start')).json.events;
      assert.equal(evs.length, 1);
      await waitFor(async () => (await request(t, '/v1/sys/seal-status')).json.rewrap?.state === 'done', { timeoutMs: 30000, message: 'the rewrap to finish' });
      const after = seen(await c.get('/console/node'));
      const rw = byId(after.text, 'rewrap');
      assert.match(rw, /<progress class="progress" value="\d+" max="\d+">/);
      assert.match(textOf(rw), /\bdone\b toward data key version \d+/);
      assert.match(textOf(rw), /\d+ of \d+ values done/);
    });

    it('a viewer sees the node but no doctor findings and no buttons, and cannot seal', async () => {
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'node-viewer', role: 'viewer' } });
      assert.equal(v.status, 201);
      const c = await consoleSignIn(t, { token: v.json.token });
      const pg = seen(await c.get('/console/node'));
      assert.equal(pg.status, 200, pg.text);
      assert.match(textOf(byId(pg.text, 'seal-status')), /^unsealed$/);
      assert.match(textOf(byId(pg.text, 'health')), /\bok\b/);
      assert.equal(byId(pg.text, 'doctor'), null);
      assert.doesNotMatch(pg.text, /class="finding/);
      assert.match(textOf(pg.text), /doctor findings are for node admins/);
      assert.equal(byId(pg.text, 'seal'), null);
      assert.equal(byId(pg.text, 'rewrap-start'), null);
      const res = await c.postRaw('/console/node/seal', { csrf: await c.csrf() });
      assert.equal(res.status, 403);
      assert.equal((await request(t, '/v1/sys/seal-status')).json.sealed, false);
      const rw = await c.postRaw('/console/node/rewrap', { csrf: await c.csrf() });
      assert.equal(rw.status, 403);
      // an admin of another tenant is not a node admin either
      const other = await createTenant(t);
      const oc = await consoleSignIn(t, { token: other.token });
      const opg = seen(await oc.get('/console/node'));
      assert.equal(opg.status, 200, opg.text);
      assert.equal(byId(opg.text, 'doctor'), null);
      assert.equal(byId(opg.text, 'seal'), null);
      assert.equal((await oc.postRaw('/console/node/seal', { csrf: await oc.csrf() })).status, 403);
      assert.equal((await request(t, '/v1/sys/seal-status')).json.sealed, false);
    });
  });

  describe(`console unseal (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let shares;
    after(async () => {
      if (t) await stopAndScan(t);
    });
    const status = async () => (await request(t, '/v1/sys/seal-status')).json;

    it('a node initialized with 3 shares (threshold 2) is sealed from the node page', async () => {
      t = await startTokend({ backend, dev: false });
      const init = await request(t, '/v1/sys/init', { method: 'POST', json: { shares: 3, threshold: 2 } });
      assert.equal(init.status, 200, init.text);
      shares = init.json.shares;
      t.token = init.json.root_token;
      const c = await consoleSignIn(t);
      const pg = seen(await c.get('/console/node'));
      assert.match(textOf(byId(pg.text, 'doctor')), /Dev mode is off/);
      const res = await c.submit(pg, '/console/node/seal');
      assert.equal(res.status, 303, res.text);
      assert.equal(res.headers.location, '/console/unseal');
      const st = await status();
      assert.equal(st.sealed, true);
      assert.equal(st.progress, 0);
      // every console page now sends to the unseal page, the session's too
      const node = await c.get('/console/node');
      assert.equal(node.status, 303);
      assert.equal(node.headers.location, '/console/unseal');
      const evs = await api(t, '/v1/events');
      assert.equal(evs.status, 503, 'sealed');
    });

    it('the unseal page shows Sealed, 0 of 2 and a form with one password field', async () => {
      const u = new ConsoleSession(t, new CookieJar());
      const pg = seen(await u.get('/console/unseal'));
      assert.equal(pg.status, 200, pg.text);
      assert.match(textOf(byId(pg.text, 'seal-status')), /^sealed$/);
      assert.match(textOf(byId(pg.text, 'unseal-progress')), /^0 of 2 shares given$/);
      const form = byId(pg.text, 'unseal');
      assert.match(form, /^<form method="post" action="\/console\/unseal"/);
      assert.match(form, /<input type="password" id="share" name="share"/);
      assert.match(form, /<button type="submit">/);
      assert.equal(form.match(/<input type="password"/g).length, 1);
      assert.match(u.jar.get('tokend_console_csrf').raw, /HttpOnly/);
    });

    it('a POST without the CSRF cookie and field is 403 and does not count the share', async () => {
      const res = seen(await browserRequest(new URL('/console/unseal', t.url).href, { method: 'POST', form: { share: shares[0] } }));
      assert.equal(res.status, 403);
      assert.match(textOf(byId(res.text, 'unseal-error')), /CSRF/);
      // the field without the cookie, and a cross-site post with both: refused too
      const u = new ConsoleSession(t, new CookieJar());
      const pg = await u.get('/console/unseal');
      const csrf = pg.forms[0].fields.csrf;
      const nocookie = seen(await browserRequest(new URL('/console/unseal', t.url).href, { method: 'POST', form: { csrf, share: shares[0] } }));
      assert.equal(nocookie.status, 403);
      const cross = seen(await u.submit(pg, '/console/unseal', { share: shares[0] }, { headers: { origin: 'https://evil.example' } }));
      assert.equal(cross.status, 403);
      const st = await status();
      assert.equal(st.sealed, true);
      assert.equal(st.progress, 0);
    });

    it('a wrong share shows the API sentence and changes nothing; one share shows 1 of 2; the second unseals and sends to sign in', async () => {
      const u = new ConsoleSession(t, new CookieJar());
      let pg = seen(await u.get('/console/unseal'));
      const s = shares[0];
      const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
      const wrong = seen(await u.submit(pg, '/console/unseal', { share: flipped }));
      assert.equal(wrong.status, 400, wrong.text);
      const api400 = await request(t, '/v1/sys/unseal', { method: 'POST', json: { share: flipped } });
      assert.equal(textOf(byId(wrong.text, 'unseal-error')), api400.json.message);
      assert.match(textOf(byId(wrong.text, 'unseal-progress')), /^0 of 2/);
      assert.equal((await status()).progress, 0);

      pg = wrong;
      const one = seen(await u.submit(pg, '/console/unseal', { share: `  ${shares[0]}\n` }));
      assert.equal(one.status, 200, one.text);
      assert.match(textOf(byId(one.text, 'unseal-progress')), /^1 of 2 shares given$/);
      assert.equal(byId(one.text, 'unseal-error'), null);
      let st = await status();
      assert.equal(st.sealed, true);
      assert.equal(st.progress, 1);
      const nonce = u.jar.get('tokend_console_unseal');
      assert.ok(nonce, 'the attempt nonce is kept in a cookie');
      assert.match(nonce.raw, /HttpOnly/);
      assert.match(nonce.raw, /SameSite=Strict/);
      // the page again (a reload) still shows the progress, and a way to start over
      let again = seen(await u.get('/console/unseal'));
      assert.match(textOf(byId(again.text, 'unseal-progress')), /^1 of 2/);
      assert.ok(byId(again.text, 'unseal-reset'));
      const reset = seen(await u.submit(again, '/console/unseal', { reset: '1' }));
      assert.equal(reset.status, 200, reset.text);
      assert.match(textOf(byId(reset.text, 'unseal-notice')), /reset/);
      assert.match(textOf(byId(reset.text, 'unseal-progress')), /^0 of 2/);
      assert.equal(byId(reset.text, 'unseal-reset'), null);
      assert.equal((await status()).progress, 0);
      assert.ok(!u.jar.get('tokend_console_unseal'), 'the nonce cookie is cleared');
      again = seen(await u.submit(reset, '/console/unseal', { share: shares[2] }));
      assert.match(textOf(byId(again.text, 'unseal-progress')), /^1 of 2/);
      assert.deepEqual((await status()).shares_held, [3]);

      const two = seen(await u.submit(again, '/console/unseal', { share: shares[1] }));
      assert.equal(two.status, 303, two.text);
      assert.equal(two.headers.location, '/console/login?why=unsealed');
      assert.ok(!u.jar.get('tokend_console_unseal'), 'the nonce cookie is cleared');
      st = await status();
      assert.equal(st.sealed, false);
      const login = seen(await u.get('/console/login?why=unsealed'));
      assert.match(textOf(login.text), /The node is unsealed; sign in\./);
      // unsealed: the unseal page sends to the node page
      const un = await u.get('/console/unseal');
      assert.equal(un.status, 303);
      assert.equal(un.headers.location, '/console/node');
      const c = await consoleSignIn(t);
      const node = seen(await c.get('/console/node'));
      assert.match(textOf(byId(node.text, 'seal-status')), /^unsealed$/);
      const evs = (await api(t, '/v1/events?kind=keyring&action=unseal')).json.events;
      assert.ok(evs.some((e) => e.outcome === 'ok'), 'the unseal is an event');
      assert.ok(evs.some((e) => e.outcome === 'denied'), 'the wrong share is an event');
    });

    it('the unseal rate limit applies to the form: past its budget the page says so with a 429', async () => {
      const n = await startTokend({ backend, dev: false });
      try {
        const init = await request(n, '/v1/sys/init', { method: 'POST', json: { shares: 3, threshold: 2 } });
        assert.equal(init.status, 200, init.text);
        assert.equal((await request(n, '/v1/sys/seal', { method: 'POST', token: init.json.root_token })).status, 200);
        const u = new ConsoleSession(n, new CookieJar());
        let pg = seen(await u.get('/console/unseal'));
        const s = init.json.shares[0];
        const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
        let res;
        for (let i = 0; i < 12; i++) {
          res = seen(await u.submit(pg, '/console/unseal', { share: flipped }));
          if (res.status === 429) break;
          assert.equal(res.status, 400, res.text);
          pg = res;
        }
        assert.equal(res.status, 429);
        assert.ok(Number(res.headers['retry-after']) > 0);
        assert.match(textOf(byId(res.text, 'unseal-error')), /too many unseal attempts/);
        // the right share is refused too until the window ends
        const right = seen(await u.submit(pg, '/console/unseal', { share: s }));
        assert.equal(right.status, 429);
        assert.equal((await request(n, '/v1/sys/seal-status')).json.progress, 0);
        shares.push(...init.json.shares);
      } finally {
        // sealed: its events cannot be read, the rest is scanned
        await stopAndScan(n, undefined, { events: false });
      }
    });

    it('no share is on any page the console answered', () => {
      assert.ok(pages.length > 10);
      for (const s of shares)
        for (const p of pages) {
          assert.ok(!p.includes(s), 'a share in a page');
          assert.ok(!p.includes(secretCore(s)), 'a share in a page');
        }
    });
  });
}
