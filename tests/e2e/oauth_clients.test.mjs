// oauth_clients.test.mjs: OAuth clients and the scope catalogue (issue 15
// item 2). /v1/oauth/scopes (name rules, a scope in use cannot go),
// /v1/oauth/clients CRUD (each inconsistent combination refused naming the
// field, redirect URI rules, another tenant's client is 404, a viewer
// reads but cannot write), the secret shown once and rotated, client
// authentication (Basic with form-urlencoded credentials, client_secret_post,
// none; the wrong method, a disabled client, a rotated secret) through the
// test build's /oauth2/test/client-auth, the tokend oauth CLI, and the
// shared secret scan.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  allEvents,
  api,
  backends,
  createPgDatabase,
  createTenant,
  freshDir,
  metric,
  request,
  runCli,
  scrape,
  startTokend,
  stopAndScan,
  storeSql,
  waitFor,
  SUITE_TIMEOUT_MS,
} from './lib/tokend.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function basic(id, secret) {
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  return 'Basic ' + Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64');
}

function clientAuth(t, form, headers = {}) {
  return request(t, '/oauth2/test/client-auth', {
    method: 'POST',
    body: new URLSearchParams(form).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
  });
}

for (const backend of backends()) {
  describe(`OAuth clients and scopes (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    before(async () => {
      t = await startTokend({ backend, args: ['--auth-fail-limit', '0'] });
    });
    after(async () => {
      if (t) await stopAndScan(t);
    });

    const scopes = {};
    it('scopes: created, listed, name rules, description bounds', async () => {
      for (const name of ['read', 'write', 'mcp:tools', 'admin']) {
        const r = await api(t, '/v1/oauth/scopes', { method: 'POST', json: { name, description: `may ${name}` } });
        assert.equal(r.status, 201, r.text);
        assert.match(r.json.id, UUID);
        assert.equal(r.json.name, name);
        scopes[name] = r.json.id;
      }
      const dup = await api(t, '/v1/oauth/scopes', { method: 'POST', json: { name: 'read' } });
      assert.equal(dup.status, 409, dup.text);
      assert.equal(dup.json.error, 'scope_exists');
      for (const name of ['', 'a b', 'quote"d', 'back\\slash', 'ünï', 'x'.repeat(129), 'tab\t']) {
        const r = await api(t, '/v1/oauth/scopes', { method: 'POST', json: { name } });
        assert.equal(r.status, 400, `${JSON.stringify(name)}: ${r.text}`);
        assert.equal(r.json.field, 'name', r.text);
      }
      const long = await api(t, '/v1/oauth/scopes', { method: 'POST', json: { name: 'ok', description: 'd'.repeat(513) } });
      assert.equal(long.status, 400);
      assert.equal(long.json.field, 'description');
      const unk = await api(t, '/v1/oauth/scopes', { method: 'POST', json: { name: 'ok', color: 'red' } });
      assert.equal(unk.status, 400);
      const list = await api(t, '/v1/oauth/scopes');
      assert.equal(list.status, 200);
      assert.deepEqual(list.json.scopes.map((s) => s.name).sort(), ['admin', 'mcp:tools', 'read', 'write']);
      const p = await api(t, `/v1/oauth/scopes/${scopes.admin}`, { method: 'PATCH', json: { description: 'everything' } });
      assert.equal(p.status, 200, p.text);
      assert.equal(p.json.description, 'everything');
      const page = await api(t, '/v1/oauth/scopes?limit=2');
      assert.equal(page.json.scopes.length, 2);
      assert.ok(page.json.next_cursor);
    });

    let conf, pub;
    it('a confidential client: 201 with the secret once, then only its preview', async () => {
      const r = await api(t, '/v1/oauth/clients', {
        method: 'POST',
        json: {
          name: 'Acme web',
          redirect_uris: ['https://app.example.com/cb'],
          grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
          scopes: ['read', 'write'],
          default_scopes: ['read'],
        },
      });
      assert.equal(r.status, 201, r.text);
      assert.match(r.json.id, UUID);
      assert.equal(r.json.client_id, r.json.id);
      assert.equal(r.json.client_type, 'confidential');
      assert.equal(r.json.token_endpoint_auth_method, 'client_secret_basic');
      assert.equal(r.json.application_type, 'web');
      assert.equal(r.json.origin, 'operator');
      assert.equal(r.json.status, 'active');
      assert.equal(r.json.rotate_refresh, true);
      assert.match(r.json.client_secret, /^tks_[A-Za-z0-9]{36}$/);
      assert.ok(r.json.secret_preview.startsWith('tks_'));
      conf = r.json;
      const g = await api(t, `/v1/oauth/clients/${conf.id}`);
      assert.equal(g.status, 200);
      assert.equal(g.json.client_secret, undefined);
      assert.equal(g.json.secret_preview, conf.secret_preview);
      assert.deepEqual(g.json.scopes, ['read', 'write']);
      const l = await api(t, '/v1/oauth/clients');
      assert.ok(l.json.clients.some((c) => c.id === conf.id));
      assert.ok(!l.text.includes(conf.client_secret));
      // the store holds a keyed hash
      const rows = await storeSql(t, `SELECT secret_hash, secret_preview FROM oauth_clients WHERE id = '${conf.id}'`);
      assert.ok(!rows.includes(conf.client_secret.slice(4)));
    });

    it('a public native client with loopback and private-use redirect URIs', async () => {
      const r = await api(t, '/v1/oauth/clients', {
        method: 'POST',
        json: {
          name: 'Acme desktop',
          client_type: 'public',
          application_type: 'native',
          redirect_uris: ['http://127.0.0.1:8123/cb', 'http://[::1]/cb', 'http://localhost/cb', 'com.example.app:/oauth'],
          scopes: ['mcp:tools'],
        },
      });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.json.token_endpoint_auth_method, 'none');
      assert.equal(r.json.client_secret, undefined);
      assert.equal(r.json.secret_preview, null);
      pub = r.json;
    });

    it('inconsistent combinations and bad members are refused naming the field', async () => {
      const base = { name: 'x', redirect_uris: ['https://a.example/cb'] };
      const cases = [
        [{ client_type: 'public', token_endpoint_auth_method: 'client_secret_basic' }, 'token_endpoint_auth_method'],
        [{ client_type: 'confidential', token_endpoint_auth_method: 'none' }, 'token_endpoint_auth_method'],
        [{ client_type: 'public', grant_types: ['client_credentials'] }, 'grant_types'],
        [{ client_type: 'public', rotate_refresh: false }, 'rotate_refresh'],
        [{ grant_types: ['password'] }, 'grant_types'],
        [{ grant_types: [] }, 'grant_types'],
        [{ grant_types: ['refresh_token', 'refresh_token'] }, 'grant_types'],
        [{ scopes: ['nope'] }, 'scopes'],
        [{ scopes: ['read'], default_scopes: ['write'] }, 'default_scopes'],
        [{ scopes: ['bad scope'] }, 'scopes'],
        [{ client_type: 'both' }, 'client_type'],
        [{ application_type: 'desktop' }, 'application_type'],
        [{ status: 'paused' }, 'status'],
        [{ name: '' }, 'name'],
        [{ name: 7 }, 'name'],
        [{ redirect_uris: [] }, 'redirect_uris'],
        [{ redirect_uris: 'https://a.example/cb' }, 'redirect_uris'],
        [{ redirect_uris: ['http://evil.example/cb'] }, 'redirect_uris'],
        [{ redirect_uris: ['http://127.0.0.1/cb'] }, 'redirect_uris'], // web app: no http
        [{ redirect_uris: ['https://a.example/cb#frag'] }, 'redirect_uris'],
        [{ redirect_uris: ['/relative/cb'] }, 'redirect_uris'],
        [{ redirect_uris: ['https://user:pw@a.example/cb'] }, 'redirect_uris'],
        [{ redirect_uris: ['https://a.example/c b'] }, 'redirect_uris'],
        [{ redirect_uris: ['https://a.example/\u00e9'] }, 'redirect_uris'],
        [{ redirect_uris: ['https://a.example:99999/cb'] }, 'redirect_uris'],
        [{ redirect_uris: ['javascript:alert(1)'] }, 'redirect_uris'],
        [{ redirect_uris: ['https:///cb'] }, 'redirect_uris'],
        [{ redirect_uris: ['https://a.example/' + 'x'.repeat(2100)] }, 'redirect_uris'],
        [{ redirect_uris: Array.from({ length: 21 }, (_, i) => `https://a.example/${i}`) }, 'redirect_uris'],
        [{ redirect_uris: ['com.example.app:/cb'] }, 'redirect_uris'], // web app: no private-use scheme
        [{ rotate_refresh: 'yes' }, 'rotate_refresh'],
      ];
      for (const [extra, field] of cases) {
        const r = await api(t, '/v1/oauth/clients', { method: 'POST', json: { ...base, ...extra } });
        assert.equal(r.status, 400, `${JSON.stringify(extra).slice(0, 200)}: ${r.text}`);
        assert.equal(r.json.field, field, `${JSON.stringify(extra).slice(0, 200)}: ${r.text}`);
      }
      const unk = await api(t, '/v1/oauth/clients', { method: 'POST', json: { ...base, logo_uri: 'https://x' } });
      assert.equal(unk.status, 400);
      assert.equal(unk.json.error, 'unknown_field');
    });

    it('client authentication: Basic, client_secret_post, none; every refusal is invalid_client', async () => {
      let r = await clientAuth(t, {}, { authorization: basic(conf.client_id, conf.client_secret) });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.id, conf.id);
      assert.match(r.headers['cache-control'], /no-store/);
      // cached: the same again (no store read needed)
      r = await clientAuth(t, {}, { authorization: basic(conf.client_id, conf.client_secret) });
      assert.equal(r.status, 200, r.text);
      // wrong secret (well-formed): 401 with WWW-Authenticate Basic
      const other = await api(t, `/v1/oauth/clients/${pub.id}`);
      assert.equal(other.status, 200);
      r = await clientAuth(t, {}, { authorization: basic(conf.client_id, 'tks_' + 'A'.repeat(36)) });
      assert.equal(r.status, 401, r.text);
      assert.equal(r.json.error, 'invalid_client');
      assert.match(r.headers['www-authenticate'], /^Basic realm="tokend"/);
      assert.match(r.headers['cache-control'], /no-store/);
      // the registered method is Basic: client_secret_post is refused
      r = await clientAuth(t, { client_id: conf.client_id, client_secret: conf.client_secret });
      assert.equal(r.status, 401, r.text);
      assert.equal(r.json.error, 'invalid_client');
      assert.match(r.json.error_description, /registered for client_secret_basic/);
      assert.equal(r.headers['www-authenticate'], undefined);
      // two methods at once
      r = await clientAuth(t, { client_secret: conf.client_secret }, { authorization: basic(conf.client_id, conf.client_secret) });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error, 'invalid_request');
      // hostile Basic values
      for (const h of ['Basic', 'Basic !!!!', 'Basic ' + Buffer.from('no-colon').toString('base64'), 'Basic ' + 'A'.repeat(5000), 'Bearer x']) {
        r = await clientAuth(t, {}, { authorization: h });
        assert.equal(r.status, 401, `${h.slice(0, 40)}: ${r.text}`);
        assert.equal(r.json.error, 'invalid_client');
        assert.match(r.headers['www-authenticate'], /Basic/);
      }
      // nothing at all
      r = await clientAuth(t, {});
      assert.equal(r.status, 401);
      // a public client: client_id alone
      r = await clientAuth(t, { client_id: pub.client_id });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.token_endpoint_auth_method, 'none');
      // a confidential client cannot go without its secret
      r = await clientAuth(t, { client_id: conf.client_id });
      assert.equal(r.status, 401);
      // unknown client
      r = await clientAuth(t, { client_id: '0190a000-0000-7000-8000-000000000099' });
      assert.equal(r.status, 401);
      // switch to client_secret_post: post works, Basic no longer
      const u = await api(t, `/v1/oauth/clients/${conf.id}`, { method: 'PATCH', json: { token_endpoint_auth_method: 'client_secret_post' } });
      assert.equal(u.status, 200, u.text);
      r = await clientAuth(t, { client_id: conf.client_id, client_secret: conf.client_secret });
      assert.equal(r.status, 200, r.text);
      r = await clientAuth(t, {}, { authorization: basic(conf.client_id, conf.client_secret) });
      assert.equal(r.status, 401, r.text);
      const m = await scrape(t);
      assert.ok(metric(m, 'tokend_oauth_client_auth_total', { method: 'client_secret_basic', result: 'ok' }) >= 2);
      assert.ok(metric(m, 'tokend_oauth_client_auth_total', { method: 'client_secret_post', result: 'invalid_client' }) >= 1);
    });

    it('rotate-secret shows the new secret once; the old one stops at once', async () => {
      const r = await api(t, `/v1/oauth/clients/${conf.id}/rotate-secret`, { method: 'POST' });
      assert.equal(r.status, 200, r.text);
      assert.match(r.json.client_secret, /^tks_/);
      assert.notEqual(r.json.client_secret, conf.client_secret);
      let a = await clientAuth(t, { client_id: conf.client_id, client_secret: conf.client_secret });
      assert.equal(a.status, 401, a.text);
      a = await clientAuth(t, { client_id: conf.client_id, client_secret: r.json.client_secret });
      assert.equal(a.status, 200, a.text);
      const pr = await api(t, `/v1/oauth/clients/${pub.id}/rotate-secret`, { method: 'POST' });
      assert.equal(pr.status, 409);
      assert.equal(pr.json.error, 'public_client');
      conf.client_secret = r.json.client_secret;
    });

    it('a disabled client is invalid_client; enabled again it works', async () => {
      let u = await api(t, `/v1/oauth/clients/${conf.id}`, { method: 'PATCH', json: { status: 'disabled' } });
      assert.equal(u.status, 200, u.text);
      let a = await clientAuth(t, { client_id: conf.client_id, client_secret: conf.client_secret });
      assert.equal(a.status, 401, a.text);
      a = await clientAuth(t, { client_id: pub.client_id });
      assert.equal(a.status, 200);
      u = await api(t, `/v1/oauth/clients/${pub.id}`, { method: 'PATCH', json: { status: 'disabled' } });
      a = await clientAuth(t, { client_id: pub.client_id });
      assert.equal(a.status, 401, a.text);
      assert.match(a.json.error_description, /disabled/);
      u = await api(t, `/v1/oauth/clients/${conf.id}`, { method: 'PATCH', json: { status: 'active' } });
      a = await clientAuth(t, { client_id: conf.client_id, client_secret: conf.client_secret });
      assert.equal(a.status, 200, a.text);
    });

    it('a scope in use cannot be deleted (409 naming the client); an unused one can', async () => {
      let r = await api(t, `/v1/oauth/scopes/${scopes.read}`, { method: 'DELETE' });
      assert.equal(r.status, 409, r.text);
      assert.equal(r.json.error, 'scope_in_use');
      assert.ok(r.json.message.includes(conf.client_id));
      r = await api(t, `/v1/oauth/scopes/${scopes.admin}`, { method: 'DELETE' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.deleted, true);
      r = await api(t, `/v1/oauth/scopes/${scopes.admin}`, { method: 'DELETE' });
      assert.equal(r.status, 404);
    });

    it("another tenant's client and scope are 404; a viewer reads but cannot write", async () => {
      const other = await createTenant(t);
      let r = await request(t, `/v1/oauth/clients/${conf.id}`, { token: other.token });
      assert.equal(r.status, 404, r.text);
      r = await request(t, `/v1/oauth/clients/${conf.id}`, { method: 'PATCH', token: other.token, json: { name: 'mine' } });
      assert.equal(r.status, 404);
      r = await request(t, `/v1/oauth/clients/${conf.id}`, { method: 'DELETE', token: other.token });
      assert.equal(r.status, 404);
      r = await request(t, `/v1/oauth/scopes/${scopes.read}`, { method: 'DELETE', token: other.token });
      assert.equal(r.status, 404);
      r = await request(t, '/v1/oauth/clients', { token: other.token });
      assert.equal(r.json.clients.length, 0);
      // the other tenant's catalogue is its own
      r = await request(t, '/v1/oauth/clients', { method: 'POST', token: other.token, json: { name: 'x', redirect_uris: ['https://a.example/cb'], scopes: ['read'] } });
      assert.equal(r.status, 400);
      assert.equal(r.json.field, 'scopes');
      const v = await api(t, '/v1/operator-tokens', { method: 'POST', json: { name: 'viewer', role: 'viewer' } });
      assert.equal(v.status, 201, v.text);
      r = await request(t, '/v1/oauth/clients', { token: v.json.token });
      assert.equal(r.status, 200);
      r = await request(t, '/v1/oauth/clients', { method: 'POST', token: v.json.token, json: { name: 'x', redirect_uris: ['https://a.example/cb'] } });
      assert.equal(r.status, 403);
    });

    it('changing the type: public -> confidential issues a secret, and back drops it', async () => {
      let r = await api(t, `/v1/oauth/clients/${pub.id}`, { method: 'PATCH', json: { status: 'active', client_type: 'confidential', application_type: 'web', redirect_uris: ['https://d.example/cb'] } });
      assert.equal(r.status, 200, r.text);
      assert.match(r.json.client_secret, /^tks_/);
      assert.equal(r.json.token_endpoint_auth_method, 'client_secret_basic');
      r = await api(t, `/v1/oauth/clients/${pub.id}`, { method: 'PATCH', json: { client_type: 'public' } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.token_endpoint_auth_method, 'none');
      assert.equal(r.json.secret_preview, null);
      assert.equal(r.json.client_secret, undefined);
    });

    it('delete: 200 then 404; events of kind oauth for each write', async () => {
      const c = await api(t, '/v1/oauth/clients', { method: 'POST', json: { name: 'short-lived', grant_types: ['client_credentials'] } });
      assert.equal(c.status, 201, c.text);
      let r = await api(t, `/v1/oauth/clients/${c.json.id}`, { method: 'DELETE' });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, { id: c.json.id, deleted: true });
      r = await api(t, `/v1/oauth/clients/${c.json.id}`);
      assert.equal(r.status, 404);
      const a = await clientAuth(t, { client_id: c.json.client_id, client_secret: c.json.client_secret });
      assert.equal(a.status, 401);
      const evs = await allEvents(t, '?kind=oauth');
      const actions = new Set(evs.map((e) => e.action));
      for (const want of ['scope_create', 'scope_update', 'scope_delete', 'client_create', 'client_update', 'client_delete', 'client_rotate_secret'])
        assert.ok(actions.has(want), `an event ${want}: ${[...actions]}`);
      assert.ok(evs.filter((e) => e.subject_type === 'oauth_client').length > 0);
    });

    it('tokend oauth clients and scopes on the command line', async () => {
      const env = { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token };
      let r = await runCli(['oauth', 'scopes', 'create', 'cli:scope', '--description', 'from the CLI'], { env });
      assert.equal(r.code, 0, r.stderr);
      r = await runCli(['oauth', 'scopes', 'list', '--json'], { env });
      assert.equal(r.code, 0, r.stderr);
      const sc = JSON.parse(r.stdout).scopes.find((s) => s.name === 'cli:scope');
      assert.ok(sc);
      r = await runCli(
        ['oauth', 'clients', 'create', '--name', 'cli client', '--redirect-uri', 'https://cli.example/cb', '--scope', 'cli:scope', '--grant', 'authorization_code', '--grant', 'client_credentials', '--json'],
        { env },
      );
      assert.equal(r.code, 0, r.stderr);
      const c = JSON.parse(r.stdout);
      assert.match(c.client_secret, /^tks_/);
      r = await runCli(['oauth', 'clients', 'show', c.id, '--json'], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).name, 'cli client');
      r = await runCli(['oauth', 'clients', 'update', c.id, '--status', 'disabled', '--json'], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).status, 'disabled');
      r = await runCli(['oauth', 'clients', 'rotate-secret', c.id, '--json'], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.match(JSON.parse(r.stdout).client_secret, /^tks_/);
      r = await runCli(['oauth', 'clients', 'list'], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /cli client/);
      r = await runCli(['oauth', 'clients', 'create', '--name', 'bad', '--redirect-uri', 'http://evil.example/cb'], { env });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /redirect/);
      r = await runCli(['oauth', 'clients', 'delete', c.id], { env });
      assert.equal(r.code, 0, r.stderr);
      r = await runCli(['oauth', 'scopes', 'delete', sc.id], { env });
      assert.equal(r.code, 0, r.stderr);
      r = await runCli(['oauth', 'clients', 'frobnicate'], { env });
      assert.equal(r.code, 2);
    });
  });
}

/** Two nodes sharing one store (the second with the first's unseal key). */
async function twoNodes(tc, backend) {
  const store = backend === 'postgres' ? await createPgDatabase() : undefined;
  const a = await startTokend({ backend, store, args: ['--node-name', 'node-a'] });
  tc.after(() => a.stop('SIGKILL').catch(() => {}));
  const dir = await freshDir('node-b');
  await copyFile(path.join(a.dataDir, 'unseal.key'), path.join(dir, 'unseal.key'));
  const bStore = backend === 'postgres' ? store : `sqlite:${path.join(a.dataDir, 'tokend.db')}`;
  const b = await startTokend({ backend, store: bStore, dataDir: dir, args: ['--node-name', 'node-b'], allowNoRootToken: true });
  tc.after(() => b.stop('SIGKILL').catch(() => {}));
  b.token = a.token;
  return { a, b };
}

for (const backend of backends()) {
  describe(`OAuth clients on two nodes (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    it('a disable, a rotation and a method change on node A refuse on node B within one second', async (tc) => {
      const { a, b } = await twoNodes(tc, backend);
      const c = await api(a, '/v1/oauth/clients', { method: 'POST', json: { name: 'two nodes', grant_types: ['client_credentials'] } });
      assert.equal(c.status, 201, c.text);
      const form = (secret) => ({ client_id: c.json.client_id, client_secret: secret });
      const hdr = (secret) => ({ authorization: basic(c.json.client_id, secret) });
      for (let i = 0; i < 3; i++) assert.equal((await clientAuth(b, {}, hdr(c.json.client_secret))).status, 200); // cached on B
      const within = (fn, message) => waitFor(fn, { timeoutMs: 1000, intervalMs: 25, message });
      assert.equal((await api(a, `/v1/oauth/clients/${c.json.id}`, { method: 'PATCH', json: { status: 'disabled' } })).status, 200);
      await within(async () => (await clientAuth(b, {}, hdr(c.json.client_secret))).status === 401, 'node B to refuse the disabled client');
      assert.equal((await api(a, `/v1/oauth/clients/${c.json.id}`, { method: 'PATCH', json: { status: 'active' } })).status, 200);
      await within(async () => (await clientAuth(b, {}, hdr(c.json.client_secret))).status === 200, 'node B to accept it again');
      const rot = await api(a, `/v1/oauth/clients/${c.json.id}/rotate-secret`, { method: 'POST' });
      assert.equal(rot.status, 200, rot.text);
      await within(async () => (await clientAuth(b, {}, hdr(c.json.client_secret))).status === 401, 'node B to refuse the old secret');
      assert.equal((await clientAuth(b, {}, hdr(rot.json.client_secret))).status, 200);
      assert.equal((await api(a, `/v1/oauth/clients/${c.json.id}`, { method: 'PATCH', json: { token_endpoint_auth_method: 'client_secret_post' } })).status, 200);
      await within(async () => (await clientAuth(b, form(rot.json.client_secret))).status === 200, 'node B to see the new method');
      assert.equal((await clientAuth(b, {}, hdr(rot.json.client_secret))).status, 401);
      await Promise.all([stopAndScan(b), stopAndScan(a)]);
    });
  });
}
