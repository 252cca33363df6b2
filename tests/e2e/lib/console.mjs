/**
 * The admin console over HTTP, as a browser without JavaScript uses it:
 * sign in with an operator token, get pages, submit their forms (with the
 * CSRF field the page carries). For page-level tests; the real-browser
 * tests (console_browser.test.mjs) drive Chromium instead.
 *
 *   const c = await consoleSignIn(t);            // t.token, or { token }
 *   const page = await c.get('/console/connections');   // {status, headers, text, forms}
 *   const res = await c.submit(page, '/console/tokens', { name: 'x', role: 'viewer' });
 */
import assert from 'node:assert/strict';

import { CookieJar, browserRequest, parseForms, htmlDecode } from './oauthflow.mjs';

export { htmlDecode };

/** A page: the answer with its forms parsed. */
function page(res) {
  return { ...res, forms: res.text && /^text\/html/.test(res.headers['content-type'] || '') ? parseForms(res.text, res.url) : [] };
}

export class ConsoleSession {
  constructor(inst, jar) {
    this.inst = inst;
    this.jar = jar;
  }

  url(p) {
    return new URL(p, this.inst.url).href;
  }

  /** GET a console path (no redirect followed). */
  async get(p, opts = {}) {
    return page(await browserRequest(this.url(p), { jar: this.jar, ...opts }));
  }

  /** POST fields to a console path as a form, without the CSRF field
   * unless given (for the refusal tests). */
  async postRaw(p, fields = {}, opts = {}) {
    return page(await browserRequest(this.url(p), { method: 'POST', form: fields, jar: this.jar, ...opts }));
  }

  /** Submit the form of pg whose action ends with actionPath (the first
   * one), its fields overridden by values: the CSRF field is the page's. */
  async submit(pg, actionPath, values = {}, opts = {}) {
    const f = pg.forms.find((x) => new URL(x.action).pathname === actionPath);
    assert.ok(f, `no form to ${actionPath} on ${pg.url}; forms: ${pg.forms.map((x) => x.action).join(', ')}`);
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...f.fields, ...values })) params.append(k, v);
    return page(await browserRequest(f.action, { method: 'POST', form: params, jar: this.jar, ...opts }));
  }

  /** The session's CSRF value, from any console page. */
  async csrf() {
    const pg = await this.get('/console/node');
    const f = pg.forms.find((x) => x.fields.csrf);
    assert.ok(f, `no CSRF field on ${pg.url} (${pg.status})`);
    return f.fields.csrf;
  }
}

/** Sign in to inst's console with token (default inst.token). Returns a
 * ConsoleSession whose jar holds the session cookie. */
export async function consoleSignIn(inst, { token = inst.token, jar = new CookieJar() } = {}) {
  const login = page(await browserRequest(new URL('/console/login', inst.url).href, { jar }));
  assert.equal(login.status, 200, login.text);
  const f = login.forms.find((x) => new URL(x.action).pathname === '/console/login');
  assert.ok(f, 'the login page has its form');
  const params = new URLSearchParams({ ...f.fields, token });
  const res = await browserRequest(f.action, { method: 'POST', form: params, jar });
  assert.equal(res.status, 303, `sign-in: ${res.status} ${res.text}`);
  assert.ok(jar.cookies.has('tokend_console'), 'the session cookie is set');
  return new ConsoleSession(inst, jar);
}

/** The text of an HTML fragment (tags dropped, entities decoded, spaces
 * collapsed), to assert on what a reader sees. */
export function textOf(html) {
  return htmlDecode(html.replace(/<script[\s\S]*?<\/script>/gi, '').replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim();
}

/** The element with id="id" (its outer HTML, up to its matching close tag
 * for simple nesting), or null. */
export function byId(html, id) {
  const open = new RegExp(`<([a-zA-Z0-9]+)\\b[^>]*\\bid="${id}"[^>]*>`).exec(html);
  if (!open) return null;
  const tag = open[1];
  let depth = 0;
  const re = new RegExp(`<(/?)${tag}\\b[^>]*>`, 'gi');
  re.lastIndex = open.index;
  for (let m; (m = re.exec(html)); ) {
    depth += m[1] ? -1 : 1;
    if (depth === 0) return html.slice(open.index, m.index + m[0].length);
  }
  return html.slice(open.index);
}

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function crc32(s) {
  let c = 0xffffffff;
  for (const b of Buffer.from(s, 'latin1')) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** A well-formed issued secret of kind ('tkw', 'tko', ...) that tokend never
 * issued: right length, alphabet and checksum (src/common/issued.c), so it
 * passes the form check and is refused by the lookup. */
export function forgedIssued(kind) {
  let body = `${kind}_`;
  for (let i = 0; i < 30; i++) body += B62[Math.floor(Math.random() * 62)];
  let crc = crc32(body);
  const check = [];
  for (let i = 0; i < 6; i++) {
    check.unshift(B62[crc % 62]);
    crc = Math.floor(crc / 62);
  }
  return body + check.join('');
}
