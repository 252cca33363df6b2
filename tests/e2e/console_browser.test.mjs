// The admin console in a real browser (issue 17, Tests): Debian's Chromium,
// headless, driven by playwright-core (lib/browser.mjs). Sign in through the
// form, unseal a sealed node share by share, an event in the live terminal
// within a second of the API call that caused it, revoke a token, a
// connection gone needs_reconnect with its diagnosis, sign out and the old
// cookie refused; security: CSRF, another tenant's object, script injected
// through a label or an event message shown as text, the CSP header, no CSP
// violation or page error, no secret in any page's source, every page
// < 100 KB. The last test saves the README's screenshot (docs/console.png).
// On SQLite, and on PostgreSQL too under tests/with-postgres.sh (backends());
// the screenshot is the SQLite run's.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { api, backends, createTenant, request, startTokend, stopAndScan, uniqueId, waitFor, REPO, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { startFakeUpstream } from './lib/fakeupstream.mjs';
import { noteSecret, preview, scanForSecrets, seenSecrets } from './lib/secrets.mjs';
import { assertCleanLog, launchBrowser, newLog, newPage, signIn, snapshot, visit } from './lib/browser.mjs';

const PAGE_MAX = 100 * 1024;
const XSS = 'xss <img src=x onerror="window.__xss=1"> <script>window.__xss=1</script>';
const XSS_SHORT = '<img src=x onerror="window.__xss=1">';
const SCREENSHOT = path.join(REPO, 'docs', 'console.png');

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** The checks every suite ends with over the pages it loaded: the CSP
 * header on every console page, each < 100 KB, no page error or CSP
 * violation, and no secret in any page's source (server HTML and the DOM
 * after the scripts) but the one-time token pages' own token. */
async function assertPagesClean(t, log, { oneTime = [] } = {}) {
  const docs = log.documents.filter((d) => new URL(d.url).pathname.startsWith('/console/') && !(d.status >= 300 && d.status < 400));
  assert.ok(docs.length > 0, 'pages were loaded');
  for (const d of docs) {
    assert.match(d.headers['content-security-policy'] || '', /default-src 'none'/, `CSP header on ${d.url} (${d.status})`);
    assert.doesNotMatch(d.headers['content-security-policy'], /unsafe-inline|unsafe-eval/);
    assert.ok(d.bytes !== null, `the body of ${d.url} was read`);
    assert.ok(d.bytes < PAGE_MAX, `${d.url}: ${d.bytes} bytes`);
  }
  assertCleanLog(log);
  const pages = [
    ...docs.filter((d) => d.body !== null).map((d, i) => [`page ${i} ${d.method} ${d.url} (${d.status}, server HTML)`, d.body]),
    ...log.snapshots.map((s, i) => [`page ${i} ${s.url} (${s.label}, DOM)`, s.html]),
  ];
  const findings = await scanForSecrets(t, seenSecrets(), { files: false, dump: false, logs: false, events: false, extra: pages });
  // the only secrets in a page: a new token on its one-time page
  const shownOnce = new Set(oneTime.map(preview));
  const onOneTimePage = (f) => shownOnce.has(f.secret) && /id="new-token"/.test(pages.find(([w]) => w === f.where)[1]);
  const stray = findings.filter((f) => !onOneTimePage(f));
  assert.deepEqual(stray.map((f) => `${f.secret} in ${f.form} in ${f.where}`), [], 'no secret in a page');
  for (const p of shownOnce) assert.ok(findings.some((f) => f.secret === p), `the one-time page shows ${p} (the scan sees it)`);
  return { pages: docs.length, findings: findings.length };
}

for (const backend of backends()) {
  describe(`console in a browser: unseal a sealed node share by share (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let ctx;
    const log = newLog();
    after(async () => {
      await ctx?.close();
      if (t) await stopAndScan(t);
    });

    it('/console/ goes to the unseal form; share 1 shows "1 of 2", share 2 opens the node and lands on the sign-in page', async () => {
      t = await startTokend({ backend, dev: false });
      const init = await request(t, '/v1/sys/init', { method: 'POST', json: { shares: 3, threshold: 2 } });
      assert.equal(init.status, 200, init.text);
      t.token = init.json.root_token;
      assert.equal((await api(t, '/v1/sys/seal', { method: 'POST' })).status, 200);
      assert.equal((await request(t, '/v1/sys/seal-status')).json.sealed, true);

      ctx = await browser.newContext();
      const page = await newPage(ctx, log);
      await visit(page, t.url, '/console/');
      assert.equal(new URL(page.url()).pathname, '/console/unseal');
      assert.match(await page.textContent('#unseal-progress'), /\b0 of 2\b/);

      await page.fill('form#unseal input#share', init.json.shares[0]);
      await Promise.all([page.waitForNavigation(), page.click('form#unseal button[type=submit]')]);
      await snapshot(page, 'share 1 given');
      assert.match(await page.textContent('#unseal-progress'), /\b1 of 2\b/);
      assert.equal(await page.inputValue('form#unseal input#share'), '', 'the share is not sent back');
      assert.equal((await request(t, '/v1/sys/seal-status')).json.sealed, true);

      await page.fill('form#unseal input#share', init.json.shares[1]);
      await Promise.all([page.waitForURL((u) => u.pathname === '/console/login'), page.click('form#unseal button[type=submit]')]);
      await snapshot(page, 'unsealed');
      assert.match(await page.textContent('p.notice'), /unseal/i);
      assert.equal((await request(t, '/v1/sys/seal-status')).json.sealed, false);

      await signIn(page, t.url, t.token);
      assert.equal(new URL(page.url()).pathname, '/console/node');
      assert.match(await page.textContent('#seal-status'), /unsealed/);
      await assertPagesClean(t, log);
    });
  });

  describe(`console in a browser (${backend})`, { timeout: SUITE_TIMEOUT_MS * 2 }, () => {
    let t;
    let up;
    let ctx;
    let page;
    const log = newLog();
    const oneTime = [];
    let cookie;

    before(async () => {
      up = await startFakeUpstream();
      t = await startTokend({ backend, args: ['--refresh-timeout', '10', '--refresh-concurrency', '0'] });
      ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      await ctx.addInitScript(() => {
        window.__xss = 0;
      });
      page = await newPage(ctx, log);
    });
    after(async () => {
      await ctx?.close();
      if (t) await stopAndScan(t);
      await up?.close();
    });

    /** A provider app on the fake upstream and a connection to it (label
     * given), created with token (default the root token). */
    async function connection(label, behaviour, token = t.token) {
      const name = uniqueId('br').replace(/[^A-Za-z0-9]/g, '');
      const clientId = `cid-${name}`;
      const clientSecret = `cs-${name}-${Math.random().toString(36).slice(2)}x`;
      const refreshToken = `rt-${name}-${Math.random().toString(36).slice(2)}x`;
      const accessToken = `at-${name}-${Math.random().toString(36).slice(2)}x`;
      for (const s of [clientSecret, refreshToken, accessToken]) noteSecret(s, { kind: 'upstream' });
      const ep = up.endpoint(name, { clientId, clientSecret, auth: 'post', refreshToken });
      ep.behave(behaviour);
      const a = await request(t, '/v1/provider-apps', {
        method: 'POST',
        token,
        json: { provider: 'generic-oauth2', name, client_id: clientId, client_secret: clientSecret, scopes: ['read'], token_url: ep.url, client_auth: 'client_secret_post' },
      });
      assert.equal(a.status, 201, a.text);
      const c = await request(t, '/v1/connections', {
        method: 'POST',
        token,
        json: { app_id: a.json.id, label, access_token: accessToken, refresh_token: refreshToken, expires_at: new Date(Date.now() + 3600e3).toISOString().replace(/\.\d+Z$/, 'Z'), scopes: ['read'] },
      });
      assert.equal(c.status, 201, c.text);
      return c.json;
    }

    it('signs in through the form with the root token and lands on the node page; the session cookie is HttpOnly and SameSite=Strict', async () => {
      await signIn(page, t.url, t.token);
      assert.equal(new URL(page.url()).pathname, '/console/node');
      const who = (await api(t, '/v1/whoami')).json;
      assert.ok((await page.textContent('span#who')).trim().length > 0);
      if (who.name) assert.equal((await page.textContent('span#who')).trim(), who.name);
      const cookies = await ctx.cookies(new URL('/console/', t.url).href);
      const c = cookies.find((x) => x.name === 'tokend_console');
      assert.ok(c, `the session cookie: ${cookies.map((x) => x.name)}`);
      assert.match(c.value, /^tkw_/);
      assert.equal(c.httpOnly, true);
      assert.equal(c.sameSite, 'Strict');
      assert.equal(c.path, '/console/');
      assert.doesNotMatch(await page.evaluate(() => document.cookie), /tokend_console=/, 'a script cannot read the session cookie');
      cookie = c;
    });

    it('every page of the nav opens from its link (200, the frame, the operator)', async () => {
      await visit(page, t.url, '/console/node');
      const links = await page.locator('header nav a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
      for (const want of ['/console/node', '/console/events', '/console/connections', '/console/clients', '/console/agents', '/console/oauth/flows', '/console/tokens', '/console/tenants'])
        assert.ok(links.includes(want), `the nav links ${want}: ${links}`);
      for (const href of links) {
        const [res] = await Promise.all([page.waitForNavigation(), page.click(`header nav a[href="${href}"]`)]);
        await snapshot(page, `nav ${href}`);
        assert.equal(res.status(), 200, `${href}: ${res.status()}`);
        assert.equal(new URL(page.url()).pathname, href);
        assert.equal((await page.textContent('span#who')).trim(), 'root');
      }
    });

    it('the live terminal shows an event within a second of the API call that caused it', async () => {
      await visit(page, t.url, '/console/events');
      await page.waitForFunction(() => document.querySelector('span#live')?.textContent.trim() === 'live', null, { timeout: 30000 });
      const ms = [];
      for (let i = 0; i < 3; i++) {
        const name = uniqueId('live');
        const t0 = Date.now();
        const r = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name, role: 'viewer' } });
        assert.equal(r.status, 201, r.text);
        await page.waitForFunction(
          (id) => [...document.querySelectorAll('#terminal .line[data-id]')].some((l) => l.textContent.includes(id)),
          r.json.id,
          { timeout: 10000, polling: 'raf' },
        );
        ms.push(Date.now() - t0);
        assert.equal((await api(t, `/v1/operator-tokens/${r.json.id}`, { method: 'DELETE' })).status, 200);
      }
      console.log(`# event to terminal line: ${ms.join(', ')} ms`);
      for (const x of ms) assert.ok(x < 1000, `an event reached the terminal in ${ms.join(', ')} ms`);
      await snapshot(page, 'events live');
    });

    it('revokes a token from its row: the row says revoked and the token is refused', async () => {
      const r = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: uniqueId('rev'), role: 'viewer' } });
      assert.equal(r.status, 201, r.text);
      assert.equal((await request(t, '/v1/whoami', { token: r.json.token })).status, 200);
      await visit(page, t.url, '/console/tokens');
      const row = page.locator(`table#tokens tr[data-id="${r.json.id}"]`);
      await row.waitFor();
      await Promise.all([page.waitForNavigation(), row.locator('form.revoke button').click()]);
      await snapshot(page, 'after revoke');
      await page.locator(`table#tokens tr[data-id="${r.json.id}"]`).getByText(/revoked/).first().waitFor({ timeout: 10000 });
      assert.equal((await request(t, '/v1/whoami', { token: r.json.token })).status, 401);
    });

    it('creates a token through the form: shown once on its page, never again', async () => {
      await visit(page, t.url, '/console/tokens');
      const form = page.locator('form#token-create');
      await form.locator('[name=name]').fill(uniqueId('made'));
      if (await form.locator('select[name=role]').count()) await form.locator('select[name=role]').selectOption('viewer');
      await Promise.all([page.waitForNavigation(), form.locator('button[type=submit]').click()]);
      const shown = (await page.textContent('p#new-token')).match(/tko_[0-9A-Za-z]{36}/);
      assert.ok(shown, 'the new token is on its page');
      noteSecret(shown[0], { kind: 'operator' });
      oneTime.push(shown[0]);
      await snapshot(page, 'new token');
      assert.equal((await request(t, '/v1/whoami', { token: shown[0] })).status, 200);
      await visit(page, t.url, '/console/tokens');
      assert.ok(!(await page.content()).includes(shown[0].slice(4)), 'the token is not shown again');
    });

    it('a connection whose refresh is refused (invalid_grant) shows needs_reconnect and its diagnosis after a refresh from its page', async () => {
      const c = await connection(`broken ${uniqueId('c')}`, { kind: 'invalid_grant' });
      await visit(page, t.url, `/console/connections/${c.id}`);
      await Promise.all([page.waitForNavigation(), page.click('form#refresh button')]);
      await snapshot(page, 'after refresh');
      // the refresh answers at once (the upstream refuses): the page shows it
      await visit(page, t.url, `/console/connections/${c.id}`);
      assert.equal(await page.locator('#status .badge.b-needs_reconnect, #status.badge.b-needs_reconnect').count(), 1, `#status: ${await page.textContent('#status')}`);
      assert.match(await page.textContent('#diagnosis'), /invalid_grant[\s\S]*reconnect/);
      await visit(page, t.url, '/console/connections?status=needs_reconnect');
      assert.equal(await page.locator(`table#connections tr[data-id="${c.id}"]`).count(), 1);
    });

    it('the screenshot: the events page with its lines (docs/console.png)', async () => {
      await visit(page, t.url, '/console/events');
      await page.waitForFunction(() => document.querySelector('span#live')?.textContent.trim() === 'live', null, { timeout: 30000 });
      await page.waitForFunction(() => document.querySelectorAll('#terminal .line[data-id]').length >= 5, null, { timeout: 10000 });
      const png = await page.screenshot({ type: 'png', fullPage: false });
      assert.ok(png.length > 10000, `screenshot: ${png.length} bytes`);
      page.screenshotPng = png;
    });

    it("another tenant's connection is a 404 page", async () => {
      const label = `mine ${uniqueId('c')}`;
      const mine = await connection(label, { kind: 'ok', rotate: true, expiresIn: 3600 });
      const other = await createTenant(t);
      const ctx2 = await browser.newContext();
      try {
        const p2 = await newPage(ctx2, log);
        await signIn(p2, t.url, other.token);
        const res = await visit(p2, t.url, `/console/connections/${mine.id}`);
        assert.equal(res.status(), 404);
        assert.match(await p2.textContent('main'), /Not found/);
        assert.ok(!(await p2.content()).includes(label), 'nothing of the connection on the page');
      } finally {
        await ctx2.close();
      }
    });

    it('a script injected through a connection label, a token name, an upstream answer or an event is shown as text', async () => {
      // the label, and an upstream whose refusal carries the script (its
      // body is in the refresh event's detail and the debug exchange)
      const c = await connection(XSS, { kind: 'status', status: 400, body: JSON.stringify({ error: XSS, error_description: XSS }) });
      const tok = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: XSS_SHORT, role: 'viewer' } });
      assert.equal(tok.status, 201, tok.text);
      const clean = async (where) => {
        assert.equal(await page.evaluate(() => window.__xss), 0, `${where}: a script ran`);
        assert.equal(await page.locator('img[src="x"], img[src$="/x"]').count(), 0, `${where}: an injected element`);
        assert.equal(await page.locator('body script:not([src])').count(), 0, `${where}: an injected script element`);
      };
      const shown = async (where, text = XSS) => {
        await page.waitForFunction((s) => document.body.innerText.includes(s), text, { timeout: 10000 }).catch(() => {
          throw new Error(`${where}: the injected text is not shown as text`);
        });
        await clean(where);
      };
      await visit(page, t.url, '/console/connections');
      await shown('connections list');
      await visit(page, t.url, `/console/connections/${c.id}`);
      await shown('connection page');
      // the debug refresh shows the upstream's answer, masked, as text
      await Promise.all([page.waitForNavigation(), page.click('form#debug-refresh button')]);
      await snapshot(page, 'debug refresh');
      // (as JSON in the exchange: the quotes are escaped there)
      assert.ok((await page.textContent('pre#exchange')).includes('<script>window.__xss=1</script>'), 'the upstream body in the exchange');
      await clean('debug refresh');
      // the terminal: the refresh event's line, live
      await visit(page, t.url, `/console/events?subject_id=${c.id}`);
      await page.waitForFunction(() => document.querySelector('span#live')?.textContent.trim() === 'live', null, { timeout: 30000 });
      const before = await page.locator('#terminal .line[data-id]').count();
      assert.equal((await api(t, `/v1/connections/${c.id}/refresh`, { method: 'POST', noteSecrets: false })).status, 409);
      await page.waitForFunction((n) => document.querySelectorAll('#terminal .line[data-id]').length > n, before, { timeout: 10000 });
      assert.match(await page.textContent('#terminal'), /rejected|reconnect/);
      await clean('events terminal');
      await snapshot(page, 'xss');
      await visit(page, t.url, '/console/tokens');
      await shown('tokens page', XSS_SHORT);
    });

    it('the CSP blocks a script added to a page, and the recorder sees the violation (so "no violation" below means something)', async () => {
      await visit(page, t.url, '/console/node');
      const had = { csp: log.cspViolations.length, console: log.consoleErrors.length };
      await page.evaluate(() => {
        const s = document.createElement('script');
        s.textContent = 'window.__xss = 2';
        document.body.appendChild(s);
      });
      await waitFor(() => log.cspViolations.length > had.csp, { timeoutMs: 10000, message: 'the CSP violation reported' });
      assert.equal(await page.evaluate(() => window.__xss), 0, 'the inline script did not run');
      assert.match(log.cspViolations[had.csp].directive, /^script-src/);
      // the planted violation is not the pages' fault
      log.cspViolations.splice(had.csp);
      await waitFor(() => log.consoleErrors.length > had.console, { timeoutMs: 10000, message: "the browser's console error" });
      log.consoleErrors.splice(had.console);
    });

    it('a form post without the CSRF field is refused (403) and changes nothing', async () => {
      await visit(page, t.url, '/console/tokens');
      const before = (await api(t, '/v1/operator-tokens')).json.tokens.length;
      const status = await page.evaluate(async () => {
        const r = await fetch('/console/tokens', { method: 'POST', body: new URLSearchParams({ name: 'no-csrf', role: 'viewer' }), redirect: 'manual' });
        return r.status;
      });
      assert.equal(status, 403);
      assert.equal((await api(t, '/v1/operator-tokens')).json.tokens.length, before);
    });

    it('signs out with the button; the old cookie in a fresh browser is sent to the sign-in page', async () => {
      await visit(page, t.url, '/console/node');
      await Promise.all([page.waitForURL((u) => u.pathname === '/console/login'), page.click('form.signout button')]);
      await snapshot(page, 'signed out');
      assert.match(await page.textContent('p.notice'), /sign/i);
      const ctx2 = await browser.newContext();
      try {
        await ctx2.addCookies([cookie]);
        const p2 = await newPage(ctx2, log);
        await visit(p2, t.url, '/console/tokens');
        assert.equal(new URL(p2.url()).pathname, '/console/login');
      } finally {
        await ctx2.close();
      }
    });

    it('every page: the CSP header, < 100 KB, no page error or CSP violation, no secret in its source but a new token on its one-time page', async () => {
      const r = await assertPagesClean(t, log, { oneTime });
      console.log(`# ${r.pages} pages checked; ${log.snapshots.length} DOM snapshots`);
      // all passed: the README's screenshot
      if (page.screenshotPng && backend === 'sqlite') {
        await mkdir(path.dirname(SCREENSHOT), { recursive: true });
        await writeFile(SCREENSHOT, page.screenshotPng);
      }
    });
  });
}
