/**
 * A real browser for the console's tests: Debian's Chromium driven by
 * playwright-core (no browser download: the system's /usr/bin/chromium, or
 * TOKEND_CHROMIUM). Headless, --no-sandbox (CI runs as root).
 *
 *   const browser = await launchBrowser();        // fails with the reason
 *   const ctx = await browser.newContext();
 *   const page = await newPage(ctx);              // records what went wrong
 *   await signIn(page, t.url, t.token);           // through the login form
 *   ...
 *   page.log.pageErrors, page.log.cspViolations, page.log.consoleErrors
 *   page.log.documents: [{url, status, headers, bytes, body}] (every page loaded)
 *   await snapshot(page, 'after revoke');         // page.content() kept too
 *
 * A page's log is shared by every page of the recorder (pass one), so that a
 * suite can assert once at the end over everything it visited.
 */
import assert from 'node:assert/strict';
import { access, constants } from 'node:fs/promises';

import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.TOKEND_CHROMIUM || '/usr/bin/chromium';

/** Launch headless Chromium. Throws (never skips) with the reason when it
 * cannot start: a missing binary or a crash at start-up must fail CI. */
export async function launchBrowser({ timeoutMs = 60000 } = {}) {
  try {
    await access(CHROMIUM, constants.X_OK);
  } catch (e) {
    throw new Error(`Chromium is not at ${CHROMIUM} (${e.code}): run scripts/deps.sh (Debian package chromium) or set TOKEND_CHROMIUM`);
  }
  try {
    return await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: timeoutMs,
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
    });
  } catch (e) {
    throw new Error(`Chromium (${CHROMIUM}) did not start: ${e.message}`);
  }
}

/** A fresh log: what a suite's pages recorded. */
export function newLog() {
  return { consoleErrors: [], pageErrors: [], cspViolations: [], documents: [], snapshots: [] };
}

/** A page in ctx whose console errors, page errors, CSP violations and
 * loaded documents (every top-level HTML answer, with its body) are kept
 * in page.log (log: a shared one from newLog()). */
export async function newPage(ctx, log = newLog()) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  page.log = log;
  // A CSP violation is reported through a binding (CDP, outside the page's
  // CSP) from a listener installed before any of the page's scripts.
  await page.exposeFunction('__tokendCspViolation', (v) => log.cspViolations.push(v));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__tokendCspViolation({ url: document.location.href, directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample });
    });
  });
  page.on('console', (m) => {
    if (m.type() === 'error') log.consoleErrors.push({ url: page.url(), text: m.text() });
  });
  page.on('pageerror', (e) => log.pageErrors.push({ url: page.url(), message: e.message }));
  page.on('response', async (res) => {
    const req = res.request();
    if (!req.isNavigationRequest() || req.frame() !== page.mainFrame()) return;
    const entry = { url: res.url(), method: req.method(), status: res.status(), headers: res.headers(), bytes: null, body: null };
    log.documents.push(entry);
    if (res.status() >= 300 && res.status() < 400) return;
    try {
      const body = await res.body();
      entry.bytes = body.length;
      entry.body = body.toString('utf8');
    } catch {
      // the page went on before its body was read: its snapshot has it
    }
  });
  return page;
}

/** Keep page.content() (the DOM as it is now, scripts' changes included)
 * for the end-of-suite secret scan. */
export async function snapshot(page, label = page.url()) {
  const html = await page.content();
  page.log.snapshots.push({ label, url: page.url(), html });
  return html;
}

/** Go to a console path and wait for the page; returns the response. */
export async function visit(page, base, p) {
  const res = await page.goto(new URL(p, base).href, { waitUntil: 'load' });
  await snapshot(page);
  return res;
}

/** Sign in through the real login form (typing the token, pressing the
 * button); waits for a page outside /console/login. */
export async function signIn(page, base, token) {
  await page.goto(new URL('/console/login', base).href);
  await page.fill('form.login input#token', token);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/console/login'), { timeout: 30000 }), page.click('form.login button[type=submit]')]);
  await snapshot(page);
}

/** Assert nothing went wrong in the pages of log: no page error, no CSP
 * violation, no console error but the browser's own note of a 4xx/5xx
 * answer (the 404 and 403 pages are expected). */
export function assertCleanLog(log) {
  assert.deepEqual(log.pageErrors, [], 'page errors');
  assert.deepEqual(log.cspViolations, [], 'CSP violations');
  const others = log.consoleErrors.filter((e) => !/^Failed to load resource: the server responded with a status of [45]\d\d/.test(e.text));
  assert.deepEqual(others, [], 'console errors');
}
