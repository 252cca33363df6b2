// tenants.test.mjs: POST/GET /v1/tenants and `tokend tenants`: a node admin
// creates a tenant and its first admin operator token (shown once, created
// with its events in one transaction); the tenants see nothing of each
// other; only an admin of the default tenant manages tenants; names are
// slugs; and no token is left in clear anywhere.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  allEvents,
  api,
  assertNoSecretIn,
  backends,
  createTenant,
  request,
  runCli,
  seenSecrets,
  startTokend,
  storeSql,
  uniqueId,
  SUITE_TIMEOUT_MS,
} from './lib/tokend.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const RFC3339_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** A fresh slug for a tenant name. */
function slug(prefix = 't') {
  return uniqueId(prefix).toLowerCase().replace(/[^a-z0-9-]/g, '-');
}

for (const backend of backends()) {
  describe(`tenants (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let rootId; // the root token's id (default tenant)
    let defaultTenant;
    let acme; // a tenant created by the suite: {id, name, created_at, token, tokenId}
    const secrets = []; // every tenant token the suite saw (the root token is in root-token)
    const cliLogs = [];

    before(async () => {
      t = await startTokend({ backend });
      const who = await api(t, '/v1/whoami');
      assert.equal(who.status, 200, who.text);
      rootId = who.json.token_id;
      defaultTenant = who.json.tenant_id;
    });
    after(async () => {
      const r = await t?.stop();
      if (r) assert.equal(r.code, 0, t.stderr());
    });

    it('a node admin creates a tenant with its first admin token, shown once', async () => {
      const name = slug('acme');
      const r = await request(t, '/v1/tenants', { method: 'POST', token: t.token, json: { name } });
      assert.equal(r.status, 201, r.text);
      assert.deepEqual(Object.keys(r.json).sort(), ['tenant', 'token', 'token_id']);
      assert.deepEqual(Object.keys(r.json.tenant).sort(), ['created_at', 'id', 'name']);
      assert.match(r.json.tenant.id, UUID);
      assert.equal(r.json.tenant.name, name);
      assert.match(r.json.tenant.created_at, RFC3339_MS);
      assert.match(r.json.token, /^tko_[0-9A-Za-z]{36}$/);
      assert.match(r.json.token_id, UUID);
      acme = { ...r.json.tenant, token: r.json.token, tokenId: r.json.token_id };
      secrets.push(acme.token);

      const one = await api(t, `/v1/tenants/${acme.id}`);
      assert.equal(one.status, 200, one.text);
      assert.deepEqual(one.json, r.json.tenant);
      const list = await api(t, '/v1/tenants');
      assert.equal(list.status, 200, list.text);
      assert.deepEqual(list.json.tenants[0], r.json.tenant, 'newest first');
      assert.ok(list.json.tenants.some((x) => x.id === defaultTenant && x.name === 'default'));
      assert.equal(list.json.next_cursor, null);
      // the token is shown once: nothing lists it again
      assert.ok(!one.text.includes(acme.token) && !list.text.includes(acme.token));
    });

    it("the new tenant's admin token works and belongs to the new tenant", async () => {
      const who = await request(t, '/v1/whoami', { token: acme.token });
      assert.equal(who.status, 200, who.text);
      assert.equal(who.json.tenant_id, acme.id);
      assert.notEqual(who.json.tenant_id, defaultTenant);
      assert.equal(who.json.token_id, acme.tokenId);
      assert.equal(who.json.role, 'admin');
      assert.equal(who.json.name, 'admin');
      // it can manage its own tenant's operators
      const op = await request(t, '/v1/operator-tokens', { method: 'POST', token: acme.token, json: { name: 'ci', role: 'operator' } });
      assert.equal(op.status, 201, op.text);
      secrets.push(op.json.token);
      const who2 = await request(t, '/v1/whoami', { token: op.json.token });
      assert.equal(who2.json.tenant_id, acme.id);
    });

    it('the creation is one event in each chain: the caller\'s, and the genesis of the new tenant\'s', async () => {
      const mine = (await allEvents(t, 'kind=tenant')).filter((e) => e.subject_id === acme.id);
      assert.equal(mine.length, 1, JSON.stringify(mine));
      assert.equal(mine[0].action, 'create');
      assert.equal(mine[0].outcome, 'ok');
      assert.equal(mine[0].subject_type, 'tenant');
      assert.equal(mine[0].detail.name, acme.name);
      assert.equal(mine[0].detail.admin_token_id, acme.tokenId);
      assert.equal(mine[0].detail.operator_token, rootId, 'the default chain names who created it');

      const theirs = await allEvents(t, '', { token: acme.token });
      const genesis = theirs.find((e) => e.seq === 1);
      assert.ok(genesis, JSON.stringify(theirs));
      assert.equal(genesis.kind, 'tenant');
      assert.equal(genesis.action, 'create');
      assert.equal(genesis.outcome, 'ok');
      assert.equal(genesis.subject_id, acme.id);
      assert.equal(genesis.detail.admin_token_id, acme.tokenId);
      assert.ok(!JSON.stringify(genesis).includes(rootId), 'the tenant sees no id of the default tenant');

      for (const token of [t.token, acme.token]) {
        const v = await request(t, '/v1/events/verify', { token });
        assert.equal(v.status, 200, v.text);
      }
    });

    it('the tenants see none of each other\'s events or operator tokens', async () => {
      const defEvents = await allEvents(t);
      const acmeEvents = await allEvents(t, '', { token: acme.token });
      assert.ok(defEvents.length > 0 && acmeEvents.length > 0);
      const defIds = new Set(defEvents.map((e) => e.id));
      for (const e of acmeEvents) {
        assert.ok(!defIds.has(e.id), `event ${e.id} is in both tenants`);
        assert.equal(e.tenant_id ?? acme.id, acme.id);
        assert.ok(!JSON.stringify(e).includes(rootId), `the acme event ${e.seq} names the root token`);
        assert.ok(!JSON.stringify(e).includes(defaultTenant), `the acme event ${e.seq} names the default tenant`);
      }
      for (const e of defEvents) assert.equal(e.tenant_id ?? defaultTenant, defaultTenant);

      const defTokens = await api(t, '/v1/operator-tokens');
      const acmeTokens = await request(t, '/v1/operator-tokens', { token: acme.token });
      assert.equal(defTokens.status, 200);
      assert.equal(acmeTokens.status, 200);
      const defTokIds = defTokens.json.tokens.map((x) => x.id);
      const acmeTokIds = acmeTokens.json.tokens.map((x) => x.id);
      assert.ok(defTokIds.includes(rootId));
      assert.ok(acmeTokIds.includes(acme.tokenId));
      assert.ok(!defTokIds.includes(acme.tokenId), 'the default tenant lists the acme token');
      assert.ok(!acmeTokIds.includes(rootId), 'acme lists the root token');
      for (const id of acmeTokIds) assert.ok(!defTokIds.includes(id));
    });

    it("revoking the other tenant's operator token answers 404 and changes nothing", async () => {
      const a = await request(t, `/v1/operator-tokens/${rootId}`, { method: 'DELETE', token: acme.token });
      assert.equal(a.status, 404, a.text);
      assert.equal(a.json.error, 'not_found');
      const b = await request(t, `/v1/operator-tokens/${acme.tokenId}`, { method: 'DELETE', token: t.token });
      assert.equal(b.status, 404, b.text);
      assert.equal(b.json.error, 'not_found');
      // both tokens still work, and neither row was touched
      assert.equal((await api(t, '/v1/whoami')).status, 200);
      assert.equal((await request(t, '/v1/whoami', { token: acme.token })).status, 200);
      const rows = await storeSql(t, `SELECT count(*) FROM operator_tokens WHERE id IN ('${rootId}', '${acme.tokenId}') AND revoked_at IS NULL`);
      assert.equal(String(rows).trim(), '2');
      // and no token_revoke event was recorded in either chain
      assert.equal((await allEvents(t, 'action=token_revoke')).length, 0);
      assert.equal((await allEvents(t, 'action=token_revoke', { token: acme.token })).length, 0);
    });

    it("a non-admin, or another tenant's admin, gets 403 on every tenants route", async () => {
      const principals = [['acme admin', acme.token]];
      for (const role of ['operator', 'viewer']) {
        const r = await request(t, '/v1/operator-tokens', { method: 'POST', token: t.token, json: { name: `${role}-x`, role } });
        assert.equal(r.status, 201, r.text);
        secrets.push(r.json.token);
        principals.push([`default ${role}`, r.json.token]);
      }
      const before = (await api(t, '/v1/tenants?limit=1000')).json.tenants.length;
      for (const [label, token] of principals) {
        const calls = [
          ['POST', '/v1/tenants', { name: slug('nope') }],
          ['GET', '/v1/tenants'],
          ['GET', `/v1/tenants/${acme.id}`],
          ['GET', `/v1/tenants/${defaultTenant}`],
        ];
        for (const [method, p, json] of calls) {
          const r = await request(t, p, { method, token, ...(json ? { json } : {}) });
          assert.equal(r.status, 403, `${label} ${method} ${p}: ${r.text}`);
          assert.equal(r.json.error, 'forbidden');
          assert.match(r.json.message, /admin/);
        }
      }
      const unauth = await request(t, '/v1/tenants', { method: 'POST', json: { name: slug('nope') } });
      assert.equal(unauth.status, 401);
      assert.equal((await api(t, '/v1/tenants?limit=1000')).json.tenants.length, before, 'nothing was created');
    });

    it('bad names get 400 naming the field and the rule; nothing is created', async () => {
      const before = (await api(t, '/v1/tenants?limit=1000')).json.tenants.length;
      const bad = [
        '',
        'Acme',
        'acme_corp',
        'a'.repeat(64),
        '-acme',
        'ac me',
        'a/b',
        '../etc',
        'a.b',
        'acme\n',
        'ac\u001bme',
        'acme\u202e',
        '\u2066acme\u2069',
        'acm\u00e9',
        'a\u0430cme', // a Cyrillic a
        '<script>',
        ' acme',
        123,
        null,
        true,
        ['acme'],
        { name: 'acme' },
      ];
      for (const name of bad) {
        const r = await request(t, '/v1/tenants', { method: 'POST', token: t.token, json: { name } });
        assert.equal(r.status, 400, `${JSON.stringify(name)}: ${r.text}`);
        assert.equal(r.json.error, 'invalid_field', JSON.stringify(name));
        assert.equal(r.json.field, 'name');
        assert.match(r.json.message, /1 to 63/);
        assert.match(r.json.message, /a-z 0-9/);
      }
      const missing = await request(t, '/v1/tenants', { method: 'POST', token: t.token, json: {} });
      assert.equal(missing.status, 400, missing.text);
      assert.equal(missing.json.error, 'missing_field');
      assert.equal(missing.json.field, 'name');
      const extra = await request(t, '/v1/tenants', { method: 'POST', token: t.token, json: { name: slug(), admin: 'x' } });
      assert.equal(extra.status, 400, extra.text);
      assert.equal(extra.json.error, 'unknown_field');
      assert.equal(extra.json.field, 'admin');
      const notObject = await request(t, '/v1/tenants', { method: 'POST', token: t.token, body: '"acme"' });
      assert.equal(notObject.status, 400, notObject.text);
      // bytes the JSON parser refuses before any field is read: a NUL, invalid UTF-8
      for (const body of [Buffer.from('{"name":"acme\\u0000x"}'), Buffer.from([...Buffer.from('{"name":"ac'), 0xff, ...Buffer.from('me"}')])]) {
        const r = await request(t, '/v1/tenants', { method: 'POST', token: t.token, body });
        assert.equal(r.status, 400, r.text);
        assert.equal(r.json.error, 'invalid_json', r.text);
      }
      assert.equal((await api(t, '/v1/tenants?limit=1000')).json.tenants.length, before, 'nothing was created');
      // the bounds are inclusive
      for (const name of ['x'.repeat(63), '0', `9-${slug()}`]) {
        const r = await request(t, '/v1/tenants', { method: 'POST', token: t.token, json: { name } });
        assert.equal(r.status, 201, `${name}: ${r.text}`);
        secrets.push(r.json.token);
      }
    });

    it('a name that exists gets 409 conflict, and nothing is created', async () => {
      const before = (await api(t, '/v1/tenants?limit=1000')).json.tenants.length;
      const tokensBefore = String(await storeSql(t, 'SELECT count(*) FROM operator_tokens')).trim();
      for (const name of [acme.name, 'default']) {
        const r = await request(t, '/v1/tenants', { method: 'POST', token: t.token, json: { name } });
        assert.equal(r.status, 409, r.text);
        assert.equal(r.json.error, 'conflict');
        assert.equal(r.json.field, 'name');
        assert.ok(r.json.message.includes(name));
      }
      assert.equal((await api(t, '/v1/tenants?limit=1000')).json.tenants.length, before);
      assert.equal(String(await storeSql(t, 'SELECT count(*) FROM operator_tokens')).trim(), tokensBefore);
    });

    it('the same name created five times at once: one 201, four 409', async () => {
      const name = slug('race');
      const rs = await Promise.all(
        Array.from({ length: 5 }, () => request(t, '/v1/tenants', { method: 'POST', token: t.token, json: { name } })),
      );
      const statuses = rs.map((r) => r.status).sort();
      assert.deepEqual(statuses, [201, 409, 409, 409, 409], rs.map((r) => r.text).join('\n'));
      for (const r of rs) if (r.status === 201) secrets.push(r.json.token);
      assert.equal(String(await storeSql(t, `SELECT count(*) FROM tenants WHERE name = '${name}'`)).trim(), '1');
      const evs = (await allEvents(t, 'kind=tenant')).filter((e) => e.detail.name === name);
      assert.equal(evs.length, 1);
    });

    it('if the events cannot be written, neither the tenant nor its token is created', async () => {
      // Refuse the genesis event of a new tenant's chain: the caller's event
      // was already written in the same transaction and must go too.
      if (backend === 'postgres') {
        await storeSql(
          t,
          "CREATE FUNCTION e2e_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.kind = 'tenant' AND NEW.tenant_id = NEW.subject_id THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$; " +
            'CREATE TRIGGER e2e_refuse BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION e2e_refuse()',
        );
      } else {
        await storeSql(t, "CREATE TRIGGER e2e_refuse BEFORE INSERT ON events WHEN NEW.kind = 'tenant' AND NEW.tenant_id = NEW.subject_id BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
      }
      const name = slug('doomed');
      const tokensBefore = String(await storeSql(t, 'SELECT count(*) FROM operator_tokens')).trim();
      const eventsBefore = (await allEvents(t, 'kind=tenant')).length;
      let r;
      try {
        r = await request(t, '/v1/tenants', { method: 'POST', token: t.token, json: { name } });
      } finally {
        await storeSql(t, backend === 'postgres' ? 'DROP TRIGGER e2e_refuse ON events; DROP FUNCTION e2e_refuse()' : 'DROP TRIGGER e2e_refuse');
      }
      assert.ok(r.status >= 500, r.text);
      assert.ok(!/tko_/.test(r.text));
      assert.equal(String(await storeSql(t, `SELECT count(*) FROM tenants WHERE name = '${name}'`)).trim(), '0');
      assert.equal(String(await storeSql(t, 'SELECT count(*) FROM operator_tokens')).trim(), tokensBefore);
      assert.equal((await allEvents(t, 'kind=tenant')).length, eventsBefore, 'the caller\'s event was rolled back too');
      // and the name is free: the same request succeeds now
      const again = await request(t, '/v1/tenants', { method: 'POST', token: t.token, json: { name } });
      assert.equal(again.status, 201, again.text);
      secrets.push(again.json.token);
    });

    it('GET /v1/tenants/{id}: 404 for an unknown id or a non-UUID', async () => {
      for (const id of ['01890a5d-ac96-774b-bcce-b302099a8057', 'not-a-uuid', acme.name, `${acme.id}x`]) {
        const r = await api(t, `/v1/tenants/${encodeURIComponent(id)}`);
        assert.equal(r.status, 404, `${id}: ${r.text}`);
        assert.equal(r.json.error, 'not_found');
      }
    });

    it('the list pages with limit and cursor, newest first, each tenant once', async () => {
      for (let i = 0; i < 3; i++) secrets.push((await createTenant(t, slug(`page${i}`))).token);
      const all = await api(t, '/v1/tenants?limit=1000');
      assert.equal(all.status, 200);
      const ids = all.json.tenants.map((x) => x.id);
      assert.ok(ids.length >= 7);
      assert.deepEqual(ids, [...ids].sort().reverse(), 'newest first');
      const seen = [];
      let cursor = null;
      for (let page = 0; page < 100; page++) {
        const r = await api(t, `/v1/tenants?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        assert.equal(r.status, 200, r.text);
        assert.ok(r.json.tenants.length <= 2);
        seen.push(...r.json.tenants.map((x) => x.id));
        if (r.json.next_cursor === null) break;
        assert.equal(typeof r.json.next_cursor, 'string');
        cursor = encodeURIComponent(r.json.next_cursor);
      }
      assert.deepEqual(seen, ids);
      assert.equal((await api(t, '/v1/tenants')).json.tenants.length, Math.min(50, ids.length), 'default limit 50');
      for (const q of ['limit=0', 'limit=1001', 'limit=x', 'cursor=nope']) {
        const r = await api(t, `/v1/tenants?${q}`);
        assert.equal(r.status, 400, `${q}: ${r.text}`);
        assert.equal(r.json.error, 'invalid_parameter');
        assert.equal(r.json.field, q.split('=')[0]);
      }
      // every list route reads limit and cursor through one function: given twice is refused
      for (const route of ['/v1/tenants', '/v1/provider-apps', '/v1/connections', '/v1/clients', '/v1/agents']) {
        for (const q of ['limit=1&limit=2', `cursor=${ids[0]}&cursor=${ids[0]}`]) {
          const r = await api(t, `${route}?${q}`);
          assert.equal(r.status, 400, `${route}?${q}: ${r.text}`);
          assert.equal(r.json.error, 'duplicate_parameter', `${route}?${q}`);
        }
        const r = await api(t, `${route}?limit=1001`);
        assert.equal(r.status, 400, `${route}?limit=1001: ${r.text}`);
        assert.equal(r.json.field, 'limit');
      }
    });

    it('tokend tenants create and list', async () => {
      const env = { TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token };
      const help = await runCli(['help']);
      assert.match(help.stdout, /tokend tenants create NAME/);
      assert.match(help.stdout, /tokend tenants list/);

      const name = slug('cli');
      const c = await runCli(['tenants', 'create', name], { env });
      cliLogs.push(c.stdout, c.stderr);
      assert.equal(c.code, 0, c.stderr);
      const tok = c.stdout.match(/tko_[0-9A-Za-z]{36}/);
      assert.ok(tok, c.stdout);
      secrets.push(tok[0]);
      assert.equal(c.stdout.split(tok[0]).length, 2, 'the token is printed once');
      assert.match(c.stdout, /shown once/);
      assert.ok(c.stdout.includes(name));
      const who = await request(t, '/v1/whoami', { token: tok[0] });
      assert.equal(who.status, 200, who.text);
      assert.notEqual(who.json.tenant_id, defaultTenant);

      const jname = slug('clijson');
      const j = await runCli(['tenants', 'create', jname, '--json'], { env });
      cliLogs.push(j.stdout, j.stderr);
      assert.equal(j.code, 0, j.stderr);
      const o = JSON.parse(j.stdout);
      secrets.push(o.token);
      assert.equal(o.tenant.name, jname);
      assert.match(o.token, /^tko_/);
      assert.match(j.stderr, /shown once/);

      const dup = await runCli(['tenants', 'create', jname], { env });
      assert.equal(dup.code, 1);
      assert.match(dup.stderr, /409 conflict/);
      const bad = await runCli(['tenants', 'create', 'Bad Name'], { env });
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /invalid_field/);
      assert.equal((await runCli(['tenants', 'create'], { env })).code, 2);
      assert.equal((await runCli(['tenants', 'frobnicate'], { env })).code, 2);
      const refused = await runCli(['tenants', 'list'], { env: { TOKEND_ADDR: t.url, TOKEND_TOKEN: acme.token } });
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /403 forbidden/);

      const l = await runCli(['tenants', 'list'], { env });
      assert.equal(l.code, 0, l.stderr);
      for (const n of [name, jname, acme.name, 'default']) assert.ok(l.stdout.includes(n), `${n} listed`);
      const lj = await runCli(['tenants', 'list', '--json'], { env });
      assert.equal(lj.code, 0, lj.stderr);
      const names = JSON.parse(lj.stdout).tenants.map((x) => x.name);
      assert.ok(names.includes(name) && names.includes(jname) && names.includes('default'));
      assert.ok(names.indexOf(jname) < names.indexOf(name), 'newest first');
      const l1 = await runCli(['tenants', 'list', '--json', '--limit', '1'], { env });
      assert.equal(l1.code, 0, l1.stderr);
      assert.deepEqual(JSON.parse(l1.stdout).tenants.map((x) => x.name), [jname]);
    });

    it('no tenant token is left in clear in the data dir, the store, the events or the logs', async () => {
      assert.ok(secrets.length >= 8);
      for (const s of secrets) assert.ok(seenSecrets().includes(s), `${s.slice(0, 8)}... noted by the harness`);
      // every 12-character piece of every token the suite saw; the CLI prints a new token once, by design
      const extra = cliLogs.map((l, i) => [`cli output ${i}`, l.replace(/tko_[0-9A-Za-z]{36}/g, '')]);
      await assertNoSecretIn(t, seenSecrets(), { window: 12, extra, tokens: [acme.token] });
    });
  });
}
