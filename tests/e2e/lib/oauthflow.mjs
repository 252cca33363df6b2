// lib/oauthflow.mjs: drive tokend's authorization server the way a browser
// and an operator do, for the conformance and MCP suites.
//
// - CookieJar: the cookies a browser keeps (name, value, Path; expiry by
//   Max-Age=0 / an Expires in the past); Secure and SameSite are recorded
//   and Secure cookies are only sent over https, as a browser does.
// - browserRequest / parseForms / submitForm: one request without following
//   redirects, the <form>s of an HTML page (action, method, hidden inputs,
//   submit buttons), and submitting one as application/x-www-form-urlencoded.
// - authorizeInBrowser: GET an authorization URL, follow redirects by hand
//   through tokend's login and consent pages (filling email and password,
//   pressing Approve or Deny), and stop at the redirect to the client's
//   redirect URI: the callback URL is returned, never fetched.
// - setupOAuth: scopes, a user and clients through the /v1 API.
//
// node:http only (no npm dependency), so any suite may use it.

import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';

import { noteSecret } from './secrets.mjs';
import { request, uniqueId } from './tokend.mjs';

// ---------------------------------------------------------------- cookies

export class CookieJar {
  constructor() {
    this.cookies = new Map(); // name -> {value, path, secure, sameSite, httpOnly}
  }

  /** Record the Set-Cookie headers of an answer to url. */
  store(url, setCookie = []) {
    const u = new URL(url);
    for (const sc of Array.isArray(setCookie) ? setCookie : [setCookie]) {
      const parts = sc.split(';').map((s) => s.trim());
      const eq = parts[0].indexOf('=');
      if (eq <= 0) continue;
      const name = parts[0].slice(0, eq).trim();
      const value = parts[0].slice(eq + 1).trim();
      const c = { value, path: defaultPath(u.pathname), secure: false, httpOnly: false, sameSite: null, raw: sc };
      let expired = false;
      for (const a of parts.slice(1)) {
        const i = a.indexOf('=');
        const k = (i < 0 ? a : a.slice(0, i)).trim().toLowerCase();
        const v = i < 0 ? '' : a.slice(i + 1).trim();
        if (k === 'path' && v.startsWith('/')) c.path = v;
        else if (k === 'secure') c.secure = true;
        else if (k === 'httponly') c.httpOnly = true;
        else if (k === 'samesite') c.sameSite = v;
        else if (k === 'max-age' && Number(v) <= 0) expired = true;
        else if (k === 'expires' && Date.parse(v) < Date.now()) expired = true;
      }
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, c);
    }
  }

  /** The Cookie header for a request to url ('' when none applies). */
  header(url) {
    const u = new URL(url);
    const out = [];
    for (const [name, c] of this.cookies) {
      if (c.secure && u.protocol !== 'https:') continue;
      if (!pathMatches(u.pathname, c.path)) continue;
      out.push(`${name}=${c.value}`);
    }
    return out.join('; ');
  }

  get(name) {
    return this.cookies.get(name);
  }
}

function defaultPath(p) {
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

function pathMatches(reqPath, cookiePath) {
  if (reqPath === cookiePath) return true;
  if (!reqPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || reqPath[cookiePath.length] === '/';
}

// ---------------------------------------------------------------- one request

/**
 * One request as a browser sends it, without following a redirect.
 * opts: {method, form (object or URLSearchParams: sent urlencoded), headers,
 * jar, ca}. Returns {status, headers, text, url}.
 */
export function browserRequest(url, opts = {}) {
  const u = new URL(url);
  const headers = { connection: 'close', accept: 'text/html', 'user-agent': 'tokend-e2e-browser', ...(opts.headers || {}) };
  const cookie = opts.jar ? opts.jar.header(u) : '';
  if (cookie) headers.cookie = cookie;
  let body;
  if (opts.form !== undefined) {
    body = (opts.form instanceof URLSearchParams ? opts.form : new URLSearchParams(opts.form)).toString();
    headers['content-type'] = 'application/x-www-form-urlencoded';
    headers['content-length'] = Buffer.byteLength(body);
  }
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: opts.method || (body !== undefined ? 'POST' : 'GET'),
        headers,
        agent: false,
        ...(opts.ca ? { ca: opts.ca } : {}),
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          if (opts.jar) opts.jar.store(u, res.headers['set-cookie'] || []);
          resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'), url: u.href });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(opts.timeoutMs || 30000, () => req.destroy(new Error(`${opts.method || 'GET'} ${u.href}: no answer in time`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

// ---------------------------------------------------------------- HTML forms

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

/** Decode the character references of an HTML attribute value or text. */
export function htmlDecode(s) {
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, e) => {
    if (e[0] === '#') {
      const cp = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(cp) ? String.fromCodePoint(cp) : m;
    }
    const v = ENTITIES[e.toLowerCase()];
    return v === undefined ? m : v;
  });
}

function attrs(tag) {
  const out = {};
  const re = /([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  // skip the element name
  const body = tag.replace(/^<\s*[a-zA-Z0-9]+/, '').replace(/\/?>$/, '');
  for (const m of body.matchAll(re)) out[m[1].toLowerCase()] = htmlDecode(m[2] ?? m[3] ?? m[4] ?? '');
  return out;
}

/**
 * The forms of an HTML page:
 *   [{action (absolute URL), method, fields: {name: value} (inputs other
 *     than submit buttons, textareas, selects' selected option),
 *     buttons: [{name, value, text}]}]
 */
export function parseForms(html, pageUrl) {
  const forms = [];
  for (const fm of html.matchAll(/<form\b[^>]*>([\s\S]*?)<\/form\s*>/gi)) {
    const open = /^<form\b[^>]*>/i.exec(fm[0])[0];
    const a = attrs(open);
    const form = {
      action: new URL(a.action || pageUrl, pageUrl).href,
      method: (a.method || 'GET').toUpperCase(),
      fields: {},
      buttons: [],
    };
    const inner = fm[1];
    for (const im of inner.matchAll(/<input\b[^>]*>/gi)) {
      const ia = attrs(im[0]);
      const type = (ia.type || 'text').toLowerCase();
      if (type === 'submit' || type === 'image') form.buttons.push({ name: ia.name || null, value: ia.value ?? '', text: ia.value ?? '' });
      else if ((type === 'checkbox' || type === 'radio') && !('checked' in ia)) continue;
      else if (ia.name) form.fields[ia.name] = ia.value ?? (type === 'checkbox' ? 'on' : '');
    }
    for (const bm of inner.matchAll(/<button\b([^>]*)>([\s\S]*?)<\/button\s*>/gi)) {
      const ba = attrs(`<button${bm[1]}>`);
      const type = (ba.type || 'submit').toLowerCase();
      if (type !== 'submit') continue;
      form.buttons.push({ name: ba.name || null, value: ba.value ?? '', text: htmlDecode(bm[2].replace(/<[^>]*>/g, '')).trim() });
    }
    for (const tm of inner.matchAll(/<textarea\b([^>]*)>([\s\S]*?)<\/textarea\s*>/gi)) {
      const ta = attrs(`<textarea${tm[1]}>`);
      if (ta.name) form.fields[ta.name] = htmlDecode(tm[2]);
    }
    forms.push(form);
  }
  return forms;
}

/** Submit form with its fields overridden by values, pressing the button
 * that matches (a RegExp on its text, value or name; default the first). */
export function submitForm(form, values = {}, { jar, button, headers } = {}) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...form.fields, ...values })) params.append(k, v);
  let b = form.buttons[0];
  if (button) {
    b = form.buttons.find((x) => button.test(x.text) || button.test(x.value) || (x.name && button.test(x.name)));
    assert.ok(b, `no button matching ${button} in the form to ${form.action}: ${JSON.stringify(form.buttons)}`);
  }
  if (b && b.name) params.append(b.name, b.value);
  if (form.method === 'GET') {
    const u = new URL(form.action);
    for (const [k, v] of params) u.searchParams.append(k, v);
    return browserRequest(u, { jar, headers });
  }
  return browserRequest(form.action, { method: 'POST', form: params, jar, headers });
}

// ---------------------------------------------------------------- the authorization flow

/**
 * Run an authorization request in a browser: GET authUrl, follow redirects,
 * fill the login form (email, password), press Approve (or Deny with
 * consent: 'deny') on the consent page, until a redirect goes to a URL that
 * starts with redirectUri: that URL is returned (not fetched).
 *
 * Returns {callback: URL, pages: [{url, status}], jar}. Throws, with the page,
 * when a page is neither a redirect nor a login/consent form.
 */
export async function authorizeInBrowser(authUrl, { redirectUri, email, password, jar = new CookieJar(), consent = 'approve', maxSteps = 12 } = {}) {
  assert.ok(redirectUri, 'authorizeInBrowser needs redirectUri');
  const pages = [];
  let res = await browserRequest(authUrl, { jar });
  for (let i = 0; i < maxSteps; i++) {
    pages.push({ url: res.url, status: res.status });
    if (res.status >= 300 && res.status < 400 && res.headers.location) {
      const next = new URL(res.headers.location, res.url);
      if (next.href.startsWith(redirectUri)) return { callback: next, pages, jar };
      res = await browserRequest(next, { jar });
      continue;
    }
    if (res.status !== 200) throw new Error(`authorization page ${res.url} answered ${res.status}:\n${res.text.slice(0, 2000)}`);
    const forms = parseForms(res.text, res.url);
    const login = forms.find((f) => f.method === 'POST' && ('password' in f.fields || /type\s*=\s*["']?password/i.test(res.text)));
    if (login && 'password' in login.fields) {
      res = await submitForm(login, { email, password }, { jar });
      continue;
    }
    const withButtons = forms.filter((f) => f.method === 'POST');
    const want = consent === 'deny' ? /deny|decline|reject|cancel/i : /approve|allow|accept|authori[sz]e|grant|yes/i;
    const cf = withButtons.find((f) => f.buttons.some((b) => want.test(b.text) || want.test(b.value) || (b.name && want.test(b.name))));
    if (cf) {
      res = await submitForm(cf, {}, { jar, button: want });
      continue;
    }
    // Deny and Approve may be separate forms, each with one button.
    const byAction = withButtons.find((f) => want.test(f.action));
    if (byAction) {
      res = await submitForm(byAction, {}, { jar });
      continue;
    }
    throw new Error(`page ${res.url} is neither a login nor a consent form:\n${res.text.slice(0, 3000)}`);
  }
  throw new Error(`no redirect to ${redirectUri} after ${maxSteps} pages: ${JSON.stringify(pages)}`);
}

// ---------------------------------------------------------------- setup through the API

function pick(obj, ...keys) {
  for (const k of keys) {
    const v = k.split('.').reduce((o, p) => (o == null ? undefined : o[p]), obj);
    if (v !== undefined && v !== null) return v;
  }
  return undefined;
}

/** Create the scope name (idempotent: a 409 is fine). */
export async function createScope(node, name, description = `the ${name} scope`, token = node.token) {
  const r = await request(node, '/v1/oauth/scopes', { method: 'POST', token, json: { name, description } });
  assert.ok(r.status === 201 || r.status === 409, `POST /v1/oauth/scopes ${name}: ${r.status} ${r.text}`);
  return r.json;
}

/** Create an end user; returns {id, email, password}. */
export async function createUser(node, { email = `${uniqueId('u').toLowerCase()}@example.com`, password = `pw-${uniqueId('p')}`, token = node.token } = {}) {
  noteSecret(password, { kind: 'user password' });
  const r = await request(node, '/v1/users', { method: 'POST', token, json: { email, password } });
  assert.equal(r.status, 201, `POST /v1/users: ${r.text}`);
  return { id: pick(r.json, 'id', 'user.id'), email, password, body: r.json };
}

/**
 * Create an OAuth client (POST /v1/oauth/clients). spec: the API's fields
 * (name, client_type, application_type, token_endpoint_auth_method,
 * redirect_uris, grant_types, scopes, default_scopes, ...). Returns
 * {id, client_id, client_secret|null, body}.
 */
export async function createClient(node, spec, token = node.token) {
  const r = await request(node, '/v1/oauth/clients', { method: 'POST', token, json: { name: uniqueId('client'), ...spec } });
  assert.equal(r.status, 201, `POST /v1/oauth/clients ${JSON.stringify(spec)}: ${r.text}`);
  const client_secret = pick(r.json, 'client_secret', 'client.client_secret', 'secret') ?? null;
  if (client_secret) noteSecret(client_secret, { kind: 'oauth client secret' });
  return {
    id: pick(r.json, 'id', 'client.id'),
    client_id: pick(r.json, 'client_id', 'client.client_id'),
    client_secret,
    body: r.json,
  };
}
