// providers.test.mjs: the provider catalogue (GET /v1/providers, `tokend
// providers`, providers_dir) and provider apps (/v1/provider-apps, `tokend
// provider-apps`): CRUD, validation errors that name the field, tenant
// isolation (another tenant's app is 404), a viewer reads but cannot
// write, and the client secret is never in an answer, an event, a log, the
// data dir or the store in clear. A bad providers_dir file stops start-up
// with exit 2, naming the file and the member.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  allEvents,
  api,
  assertNoSecretIn,
  backends,
  BIN,
  createTenant,
  request,
  runCli,
  seenSecrets,
  serveExpectingExit,
  startTokend,
  stopAndScan,
  storeSql,
  uniqueId,
  SUITE_TIMEOUT_MS,
} from './lib/tokend.mjs';
import { noteSecret } from './lib/secrets.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A client secret no other text contains (noted for the shared secret
 * scan), and its 12-character windows. */
function newSecret() {
  const s = `cs-${uniqueId('sec').replace(/[^A-Za-z0-9]/g, '')}-${Math.random().toString(36).slice(2)}Zq9`;
  assert.ok(s.length >= 16, s);
  noteSecret(s, { kind: 'client-secret' });
  return s;
}
function secretPieces(s) {
  const pieces = [s];
  for (let i = 0; i + 12 <= s.length; i++) pieces.push(s.slice(i, i + 12));
  return pieces;
}

/** The environment without TOKEND_*, plus extra (as the e2e library does). */
function cleanEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TOKEND_')) env[k] = v;
  return { ...env, ...extra };
}

/** Run the CLI with input on stdin. */
function cliWithStdin(args, input, env) {
  return new Promise((resolve) => {
    const p = execFile(BIN, args, { env: cleanEnv(env), timeout: 30000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code : 0, stdout, stderr }),
    );
    p.stdin.end(input);
  });
}

const bitrix = (over = {}) => ({
  provider: 'bitrix24',
  name: uniqueId('portal'),
  client_id: 'local.5f0a1b2c3d4e5f',
  scopes: ['crm', 'user'],
  params: { domain: 'acme.bitrix24.com' },
  ...over,
});

for (const backend of backends()) {
  describe(`providers (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let other; // another tenant {id, token}
    let viewer; // a viewer token of the default tenant
    const secrets = [];
    const cliLogs = [];

    const post = (json, token = t.token) => request(t, '/v1/provider-apps', { method: 'POST', token, json });
    const patch = (id, json, token = t.token) => request(t, `/v1/provider-apps/${id}`, { method: 'PATCH', token, json });
    const del = (id, token = t.token) => request(t, `/v1/provider-apps/${id}`, { method: 'DELETE', token });

    before(async () => {
      t = await startTokend({ backend });
      other = await createTenant(t);
      const v = await request(t, '/v1/operator-tokens', { method: 'POST', token: t.token, json: { name: 'viewer', role: 'viewer' } });
      assert.equal(v.status, 201, v.text);
      viewer = v.json.token;
    });
    const cliExtra = () => cliLogs.map((l, i) => [`cli output ${i}`, l]);
    after(() => stopAndScan(t, seenSecrets(), { extra: cliExtra() }));

    it('GET /v1/providers lists the catalogue; any role reads it; an unknown name is 404', async () => {
      for (const token of [t.token, viewer, other.token]) {
        const r = await request(t, '/v1/providers', { token });
        assert.equal(r.status, 200, r.text);
        const names = r.json.providers.map((p) => p.name);
        for (const n of ['bitrix24', 'ebay', 'ebay-sandbox', 'google', 'microsoft', 'slack', 'github', 'salesforce', 'hubspot', 'generic-oauth2'])
          assert.ok(names.includes(n), `${n} listed`);
        assert.deepEqual(names, [...names].sort(), 'name order');
        assert.equal(r.json.next_cursor, null);
      }
      const b = await api(t, '/v1/providers/bitrix24');
      assert.equal(b.status, 200, b.text);
      assert.equal(b.json.token_method, 'GET');
      assert.equal(b.json.client_auth, 'query');
      assert.equal(b.json.rotates_refresh_tokens, true);
      assert.deepEqual(b.json.expired_token, { status: 401, body_contains: 'expired_token' });
      assert.equal(b.json.params.domain.type, 'hostname');
      assert.match(b.json.authorize_url, /\{domain\}/);
      assert.equal(b.json.source, 'builtin');
      const e = await api(t, '/v1/providers/ebay');
      assert.equal(e.json.client_auth, 'client_secret_basic');
      assert.equal(e.json.scopes.sent_on_refresh, true);
      assert.equal(e.json.refresh_token_lifetime, 47304000);
      const es = await api(t, '/v1/providers/ebay-sandbox');
      assert.match(es.json.token_url, /sandbox\.ebay\.com/);
      const g = await api(t, '/v1/providers/generic-oauth2');
      assert.equal(g.json.token_url, null);
      assert.equal(g.json.urls_per_app, true);
      const n = await api(t, '/v1/providers/nope');
      assert.equal(n.status, 404);
      assert.equal(n.json.error, 'not_found');
      assert.equal((await request(t, '/v1/providers')).status, 401);
    });

    it('creates, shows, lists, updates and deletes an app; the secret is never returned', async () => {
      const secret = newSecret();
      secrets.push(secret);
      const body = bitrix({ client_secret: secret });
      const c = await post(body);
      assert.equal(c.status, 201, c.text);
      assert.ok(!c.text.includes(secret));
      const app = c.json;
      assert.match(app.id, UUID);
      assert.equal(app.provider, 'bitrix24');
      assert.equal(app.name, body.name);
      assert.equal(app.client_secret_set, true);
      assert.equal(app.client_secret, undefined);
      assert.equal(app.environment, 'production');
      assert.deepEqual(app.scopes, ['crm', 'user']);
      assert.deepEqual(app.params, { domain: 'acme.bitrix24.com' });
      assert.equal(app.token_url, null);
      assert.equal(app.effective.authorize_url, 'https://acme.bitrix24.com/oauth/authorize/');
      assert.equal(app.effective.token_method, 'GET');
      assert.equal(app.effective.client_auth, 'query');

      const g = await api(t, `/v1/provider-apps/${app.id}`);
      assert.equal(g.status, 200, g.text);
      assert.deepEqual(g.json, app);
      const gv = await request(t, `/v1/provider-apps/${app.id}`, { token: viewer });
      assert.equal(gv.status, 200);
      assert.ok(!gv.text.includes(secret));

      const l = await api(t, '/v1/provider-apps');
      assert.equal(l.status, 200, l.text);
      assert.ok(l.json.provider_apps.some((a) => a.id === app.id));
      assert.ok(!l.text.includes(secret));
      const lf = await api(t, '/v1/provider-apps?provider=ebay');
      assert.ok(!lf.json.provider_apps.some((a) => a.id === app.id), 'filter by provider');
      assert.equal((await api(t, '/v1/provider-apps?provider=nope')).json.field, 'provider');

      // overrides: a loopback token URL (a private deployment), then cleared
      const secret2 = newSecret();
      secrets.push(secret2);
      const u = await patch(app.id, {
        name: `${body.name}-renamed`,
        scopes: ['crm'],
        client_secret: secret2,
        token_url: 'http://127.0.0.1:9/oauth/token/',
        client_auth: 'client_secret_post',
        rotates_refresh_tokens: false,
        default_lifetime: 600,
      });
      assert.equal(u.status, 200, u.text);
      assert.ok(!u.text.includes(secret2));
      assert.equal(u.json.name, `${body.name}-renamed`);
      assert.deepEqual(u.json.scopes, ['crm']);
      assert.equal(u.json.token_url, 'http://127.0.0.1:9/oauth/token/');
      assert.equal(u.json.effective.token_url, 'http://127.0.0.1:9/oauth/token/');
      assert.equal(u.json.effective.client_auth, 'client_secret_post');
      assert.equal(u.json.effective.rotates_refresh_tokens, false);
      assert.equal(u.json.effective.default_lifetime, 600);
      assert.equal(u.json.created_at, app.created_at);
      const cl = await patch(app.id, { token_url: null, client_auth: null });
      assert.equal(cl.status, 200, cl.text);
      assert.equal(cl.json.token_url, null);
      assert.equal(cl.json.effective.token_url, 'https://oauth.bitrix.info/oauth/token/');
      assert.equal(cl.json.effective.client_auth, 'query');
      assert.equal(cl.json.effective.default_lifetime, 600, 'other overrides stay');

      // the client secret opens under the row's place (sealed, not hashed)
      const col = await storeSql(t, `SELECT client_secret FROM provider_apps WHERE id = '${app.id}'`);
      assert.match(String(col).trim(), /^ENC:v1:\d+:/);

      const d = await del(app.id);
      assert.equal(d.status, 200, d.text);
      assert.deepEqual(d.json, { id: app.id, deleted: true });
      assert.equal((await api(t, `/v1/provider-apps/${app.id}`)).status, 404);
      assert.equal((await del(app.id)).status, 404);
      assert.equal((await api(t, '/v1/provider-apps/not-a-uuid')).status, 404);

      // ebay: Basic auth, sandbox entry; generic-oauth2 with its own URLs; no secret at all
      const ebSecret = newSecret();
      secrets.push(ebSecret);
      const eb = await post({ provider: 'ebay-sandbox', name: uniqueId('eb'), client_id: 'Acme-app-SBX-1234', client_secret: ebSecret, scopes: ['https://api.ebay.com/oauth/api_scope'] });
      assert.equal(eb.status, 201, eb.text);
      assert.equal(eb.json.effective.client_auth, 'client_secret_basic');
      const go = await post({ provider: 'generic-oauth2', name: uniqueId('g'), client_id: 'x', token_url: 'https://auth.example.test/token', authorize_url: 'https://auth.example.test/authorize' });
      assert.equal(go.status, 201, go.text);
      assert.equal(go.json.client_secret_set, false);
      assert.equal(go.json.effective.token_url, 'https://auth.example.test/token');
      const sf = await post({ provider: 'salesforce', name: uniqueId('sf'), client_id: 'x', environment: 'sandbox' });
      assert.equal(sf.status, 201, sf.text);
      assert.match(sf.json.effective.token_url, /test\.salesforce\.com/);

      // a name is unique per tenant
      const dup = await post({ provider: 'generic-oauth2', name: go.json.name, client_id: 'y', token_url: 'https://a.test/t' });
      assert.equal(dup.status, 409, dup.text);
      assert.equal(dup.json.field, 'name');
    });

    it('validation errors name the field', async () => {
      const { body } = { body: bitrix() };
      const cases = [
        [{ ...body, provider: undefined }, 'provider', 'missing_field'],
        [{ ...body, provider: 'nope' }, 'provider'],
        [{ ...body, provider: 7 }, 'provider'],
        [{ ...body, name: undefined }, 'name', 'missing_field'],
        [{ ...body, name: '' }, 'name'],
        [{ ...body, name: 'a\u202eb' }, 'name'],
        [{ ...body, name: 'x'.repeat(129) }, 'name'],
        [{ ...body, client_id: undefined }, 'client_id', 'missing_field'],
        [{ ...body, client_id: 'a b' }, 'client_id'],
        [{ ...body, client_id: 'x'.repeat(513) }, 'client_id'],
        [{ ...body, client_secret: 5 }, 'client_secret'],
        [{ ...body, client_secret: '' }, 'client_secret'],
        [{ ...body, client_secret: 'x'.repeat(4097) }, 'client_secret'],
        [{ ...body, scopes: 'crm user' }, 'scopes'],
        [{ ...body, scopes: ['crm user'] }, 'scopes'],
        [{ ...body, scopes: ['a,b'] }, 'scopes'], // bitrix24's separator is ','
        [{ ...body, scopes: ['crm', 'crm'] }, 'scopes'],
        [{ ...body, scopes: [1] }, 'scopes'],
        [{ ...body, scopes: Array.from({ length: 65 }, (_, i) => `s${i}`) }, 'scopes'],
        [{ ...body, environment: 'staging' }, 'environment'],
        [{ ...body, environment: 'sandbox' }, 'environment'], // bitrix24 has no sandbox URLs
        [{ ...body, params: undefined }, 'params.domain', 'missing_field'],
        [{ ...body, params: {} }, 'params.domain', 'missing_field'],
        [{ ...body, params: { domain: 'acme bitrix' } }, 'params.domain'],
        [{ ...body, params: { domain: 'evil.com/x?' } }, 'params.domain'],
        [{ ...body, params: { domain: 'a.com', region: 'eu' } }, 'params.region'],
        [{ ...body, params: { domain: 5 } }, 'params.domain'],
        [{ ...body, params: [] }, 'params'],
        [{ ...body, token_url: 'http://oauth.example.com/token' }, 'token_url'],
        [{ ...body, token_url: 'https://user:pw@example.com/token' }, 'token_url'],
        [{ ...body, token_url: 'ftp://example.com/' }, 'token_url'],
        [{ ...body, authorize_url: 'http://10.0.0.1/auth' }, 'authorize_url'],
        [{ ...body, client_auth: 'private_key_jwt' }, 'client_auth'],
        [{ ...body, rotates_refresh_tokens: 'yes' }, 'rotates_refresh_tokens'],
        [{ ...body, default_lifetime: 10 }, 'default_lifetime'],
        [{ ...body, default_lifetime: 1.5 }, 'default_lifetime'],
        [{ ...body, extra: 1 }, 'extra', 'unknown_field'],
        [{ provider: 'generic-oauth2', name: 'g', client_id: 'x' }, 'token_url', 'missing_field'],
        [{ provider: 'ebay', name: 'e', client_id: 'x', environment: 'sandbox' }, 'environment'],
        [{ provider: 'microsoft', name: 'm', client_id: 'x', params: { tenant: 'a/b' } }, 'params.tenant'],
      ];
      for (const [json, field, code = 'invalid_field'] of cases) {
        const r = await post(json);
        assert.equal(r.status, 400, `${JSON.stringify(json).slice(0, 200)}: ${r.text}`);
        assert.equal(r.json.field, field, `${JSON.stringify(json).slice(0, 200)}: ${r.text}`);
        assert.equal(r.json.error, code, r.text);
        assert.ok(r.json.message.length > 0);
      }
      // PATCH: the provider cannot change; nulls for plain members are refused
      const c = await post(bitrix());
      assert.equal(c.status, 201, c.text);
      for (const [json, field] of [
        [{ provider: 'ebay' }, 'provider'],
        [{ name: null }, 'name'],
        [{ params: { domain: 'bad domain' } }, 'params.domain'],
        [{ token_url: 'http://example.com/' }, 'token_url'],
      ]) {
        const r = await patch(c.json.id, json);
        assert.equal(r.status, 400, r.text);
        assert.equal(r.json.field, field, r.text);
      }
      assert.deepEqual((await api(t, `/v1/provider-apps/${c.json.id}`)).json, c.json, 'refused updates change nothing');
      // bad JSON: the error never quotes the body (which may hold the secret)
      const secret = newSecret();
      secrets.push(secret);
      for (const raw of [`{"client_secret": "${secret}`, `{"client_secret": ${secret}}`, `{"client_secret": "${secret}", "client_secret": "${secret}"}`]) {
        const r = await request(t, '/v1/provider-apps', { method: 'POST', token: t.token, body: raw, headers: { 'content-type': 'application/json' } });
        assert.equal(r.status, 400, r.text);
        assert.equal(r.json.error, 'invalid_json');
        assert.match(r.json.message, /line \d+ column \d+/);
        for (const piece of secretPieces(secret)) assert.ok(!r.text.includes(piece), `the error quotes the body: ${r.text}`);
      }
    });

    it("another tenant's app is 404, and nothing of it changes", async () => {
      const c = await post(bitrix({ client_secret: (secrets.push(newSecret()), secrets.at(-1)) }));
      assert.equal(c.status, 201, c.text);
      const id = c.json.id;
      assert.equal((await request(t, `/v1/provider-apps/${id}`, { token: other.token })).status, 404);
      const p = await patch(id, { name: 'stolen' }, other.token);
      assert.equal(p.status, 404, p.text);
      assert.equal((await del(id, other.token)).status, 404);
      const l = await request(t, '/v1/provider-apps', { token: other.token });
      assert.equal(l.status, 200);
      assert.ok(!l.json.provider_apps.some((a) => a.id === id));
      assert.deepEqual((await api(t, `/v1/provider-apps/${id}`)).json, c.json);
      // the same name is free in another tenant
      const o = await post(bitrix({ name: c.json.name }), other.token);
      assert.equal(o.status, 201, o.text);
      assert.equal((await api(t, `/v1/provider-apps/${o.json.id}`)).status, 404);
    });

    it('a viewer reads but cannot write', async () => {
      const c = await post(bitrix());
      assert.equal(c.status, 201, c.text);
      assert.equal((await request(t, '/v1/provider-apps', { token: viewer })).status, 200);
      for (const r of [await post(bitrix(), viewer), await patch(c.json.id, { name: 'v' }, viewer), await del(c.json.id, viewer)]) {
        assert.equal(r.status, 403, r.text);
        assert.equal(r.json.error, 'forbidden');
      }
      assert.deepEqual((await api(t, `/v1/provider-apps/${c.json.id}`)).json, c.json);
    });

    it('records create, update and delete events without the secret', async () => {
      const secret = newSecret();
      secrets.push(secret);
      const c = await post(bitrix({ client_secret: secret }));
      assert.equal(c.status, 201, c.text);
      assert.equal((await patch(c.json.id, { client_secret: newSecret() })).status, 200);
      assert.equal((await del(c.json.id)).status, 200);
      const evs = (await allEvents(t, `kind=provider_app`)).filter((e) => e.subject_id === c.json.id);
      assert.deepEqual(evs.map((e) => e.action).sort(), ['create', 'delete', 'update']);
      for (const e of evs) {
        assert.equal(e.outcome, 'ok');
        assert.equal(e.subject_type, 'provider_app');
        assert.ok(!JSON.stringify(e).includes(secret));
      }
      const created = evs.find((e) => e.action === 'create');
      assert.equal(created.detail.provider, 'bitrix24');
      assert.ok(created.detail.members.includes('client_secret'));
    });

    it('tokend providers and tokend provider-apps', async () => {
      const env = { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token };
      const l = await runCli(['providers', 'list'], { env });
      assert.equal(l.code, 0, l.stderr);
      assert.match(l.stdout, /^bitrix24\s+query\s+yes\s+builtin\s+https:\/\/oauth\.bitrix\.info/m);
      assert.match(l.stdout, /^generic-oauth2 .*\(set per app\)/m);
      const s = await runCli(['providers', 'show', 'ebay'], { env });
      assert.equal(s.code, 0, s.stderr);
      assert.equal(JSON.parse(s.stdout).client_auth, 'client_secret_basic');
      assert.equal((await runCli(['providers', 'show', 'nope'], { env })).code, 1);

      const dir = await mkdtemp(path.join(os.tmpdir(), 'tokend-cs-'));
      const secret = newSecret();
      secrets.push(secret);
      await writeFile(path.join(dir, 'secret'), `${secret}\n`, { mode: 0o600 });
      const name = uniqueId('cli');
      const c = await runCli(['provider-apps', 'create', '--provider', 'bitrix24', '--name', name, '--client-id', 'local.cli',
        '--client-secret-file', path.join(dir, 'secret'), '--scope', 'crm', '--param', 'domain=cli.bitrix24.com', '--json'], { env });
      cliLogs.push(c.stdout, c.stderr);
      assert.equal(c.code, 0, c.stderr);
      const app = JSON.parse(c.stdout);
      assert.equal(app.client_secret_set, true);
      assert.equal(app.effective.authorize_url, 'https://cli.bitrix24.com/oauth/authorize/');
      // the secret reached tokend without its newline: an update through stdin shows nothing of it
      const secret2 = newSecret();
      secrets.push(secret2);
      const u = await cliWithStdin(['provider-apps', 'update', app.id, '--client-secret-file', '-', '--default-lifetime', '900'], `${secret2}\n`, env);
      cliLogs.push(u.stdout, u.stderr);
      assert.equal(u.code, 0, u.stderr);
      assert.match(u.stdout, /client_secret\s+yes/);
      const sh = await runCli(['provider-apps', 'show', app.id, '--json'], { env });
      assert.equal(JSON.parse(sh.stdout).effective.default_lifetime, 900);
      const st = await runCli(['provider-apps', 'show', app.id], { env });
      assert.match(st.stdout, /^client_secret\s+yes$/m);
      assert.match(st.stdout, /^authorize_url\s+https:\/\/cli\.bitrix24\.com\/oauth\/authorize\/$/m);
      const li = await runCli(['provider-apps', 'list', '--provider', 'bitrix24'], { env });
      assert.equal(li.code, 0, li.stderr);
      assert.ok(li.stdout.includes(app.id));
      // never from argv
      const argv = await runCli(['provider-apps', 'create', '--provider', 'bitrix24', '--client-secret', 'x'], { env });
      assert.equal(argv.code, 2);
      assert.match(argv.stderr, /never taken from the command line/);
      const bad = await runCli(['provider-apps', 'create', '--provider', 'bitrix24', '--name', 'n', '--client-id', 'c'], { env });
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /params\.domain/);
      const d = await runCli(['provider-apps', 'delete', app.id], { env });
      assert.equal(d.code, 0, d.stderr);
      assert.equal((await runCli(['provider-apps', 'show', app.id], { env })).code, 1);
      const v = await runCli(['provider-apps', 'delete', app.id], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: viewer } });
      assert.equal(v.code, 1);
    });

    it('providers_dir replaces and adds entries; a bad file stops start-up with exit 2 naming file and member', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'tokend-providers-'));
      await writeFile(path.join(dir, 'bitrix24.json'), JSON.stringify({
        name: 'bitrix24', display_name: 'Bitrix24 (on-premises)', authorize_url: 'https://{domain}/oauth/authorize/',
        token_url: 'http://127.0.0.1:1/oauth/token/', token_method: 'GET', client_auth: 'query',
        rotates_refresh_tokens: true, default_lifetime: 1800,
        params: { domain: { type: 'hostname', description: 'portal' } },
      }));
      await writeFile(path.join(dir, 'acme.json'), JSON.stringify({
        name: 'acme', display_name: 'Acme', authorize_url: null, token_url: 'https://auth.acme.test/token',
        client_auth: 'client_secret_basic', rotates_refresh_tokens: false, default_lifetime: 600,
      }));
      await writeFile(path.join(dir, 'notes.txt'), 'not a catalogue file');
      const n = await startTokend({ backend, args: ['--providers-dir', dir] });
      try {
        const b = await api(n, '/v1/providers/bitrix24');
        assert.equal(b.status, 200, b.text);
        assert.equal(b.json.source, 'providers_dir');
        assert.equal(b.json.token_url, 'http://127.0.0.1:1/oauth/token/');
        const a = await api(n, '/v1/providers/acme');
        assert.equal(a.json.source, 'providers_dir');
        assert.equal((await api(n, '/v1/providers/ebay')).json.source, 'builtin');
        const c = await request(n, '/v1/provider-apps', { method: 'POST', token: n.token, json: { provider: 'acme', name: 'a', client_id: 'x' } });
        assert.equal(c.status, 201, c.text);
        assert.equal(c.json.effective.token_url, 'https://auth.acme.test/token');
      } finally {
        await stopAndScan(n);
      }
      // bad files: each stops start-up (exit 2), naming the file and the member
      const bads = [
        ['zz.json', '{"name": "zz"', '(file)'],
        ['zz.json', JSON.stringify({ name: 'zz', display_name: 'Z', authorize_url: null, token_url: 'http://evil.test/t', client_auth: 'query', rotates_refresh_tokens: false, default_lifetime: 600 }), 'token_url'],
        ['zz.json', JSON.stringify({ name: 'zz', display_name: 'Z', authorize_url: null, token_url: 'https://a.test/t', client_auth: 'query', rotates_refresh_tokens: false, default_lifetime: 600, colour: 'red' }), 'colour'],
        ['zz.json', JSON.stringify({ name: 'other', display_name: 'Z' }), 'name'],
      ];
      for (const [file, text, field] of bads) {
        const bd = await mkdtemp(path.join(os.tmpdir(), 'tokend-providers-bad-'));
        await writeFile(path.join(bd, file), text);
        const r = await serveExpectingExit({ backend, args: ['--providers-dir', bd] });
        assert.equal(r.code, 2, r.stderr);
        assert.ok(r.stderr.includes(path.join(bd, file)), `names the file: ${r.stderr}`);
        assert.ok(r.stderr.includes(`${field}:`), `names ${field}: ${r.stderr}`);
      }
      const ld = await mkdtemp(path.join(os.tmpdir(), 'tokend-providers-link-'));
      await symlink('/etc/hostname', path.join(ld, 'x.json'));
      const r = await serveExpectingExit({ backend, args: ['--providers-dir', ld] });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /x\.json.*not a regular file|x\.json.*cannot be opened/);
      const missing = await serveExpectingExit({ backend, args: ['--providers-dir', path.join(ld, 'none')] });
      assert.equal(missing.code, 2, missing.stderr);
      assert.match(missing.stderr, /providers_dir/);
    });

    it('client secrets are rewrapped after a rotation; a secret copied to another row does not open there', async () => {
      const a = await post(bitrix({ client_secret: (secrets.push(newSecret()), secrets.at(-1)) }));
      const b = await post(bitrix({ client_secret: (secrets.push(newSecret()), secrets.at(-1)) }));
      assert.equal(a.status, 201, a.text);
      assert.equal(b.status, 201, b.text);
      const col = async (id) => String(await storeSql(t, `SELECT client_secret FROM provider_apps WHERE id = '${id}'`)).trim();
      const v0 = Number(/^ENC:v1:(\d+):/.exec(await col(a.json.id))[1]);
      // b's row gets a's sealed value: bound to a's row, it must not open as b's
      await storeSql(t, `UPDATE provider_apps SET client_secret = '${await col(a.json.id)}' WHERE id = '${b.json.id}'`);
      const rot = await request(t, '/v1/sys/rotate', { method: 'POST', token: t.token });
      assert.equal(rot.status, 200, rot.text);
      const rw = await request(t, '/v1/sys/rewrap', { method: 'POST', token: t.token });
      assert.equal(rw.status, 202, rw.text);
      assert.ok(rw.json.total >= 2, rw.text);
      let st;
      for (let i = 0; i < 300; i++) {
        st = (await request(t, '/v1/sys/seal-status')).json.rewrap;
        if (st && st.state === 'done') break;
        await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(st.state, 'done', JSON.stringify(st));
      assert.equal(st.failed, 1, JSON.stringify(st));
      assert.equal(st.first_failed_row, `provider_apps.client_secret:${b.json.id}`);
      assert.ok(st.rewrapped >= 1);
      const v1 = Number(/^ENC:v1:(\d+):/.exec(await col(a.json.id))[1]);
      assert.ok(v1 > v0, `a's secret is sealed under the new key version (${v0} -> ${v1})`);
      assert.equal((await api(t, `/v1/provider-apps/${a.json.id}`)).json.client_secret_set, true);
    });

    it('no client secret is left in clear in the data dir, the store, the events or the logs', async () => {
      assert.ok(secrets.length >= 6);
      for (const s of secrets) assert.ok(seenSecrets({ kind: 'client-secret' }).includes(s), 'every client secret is noted for the scan');
      assert.match(String(await storeSql(t, 'SELECT count(*) FROM provider_apps')), /[1-9]/, 'the store holds apps to scan');
      // the shared scan (data dir, store dump, logs, the events of both
      // tenants) plus the CLI's output, for every 12-character window of
      // each client secret as well as the whole (in clear and encoded)
      await assertNoSecretIn(t, secrets, { window: 12, extra: cliExtra(), tokens: [other.token] });
    });
  });
}
