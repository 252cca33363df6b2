// diagnosis.test.mjs: GET /v1/connections/{id}/diagnosis and `tokend doctor
// connection` (issue 18 item 8) against the fault-injecting fake upstream:
// ok, invalid_grant (and a refresh token spent by an earlier refresh), repeated
// HTML 503, and a sealed value copied to another row.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { api, backends, createTenant, request, runCli, startTokend, storeSql, uniqueId, SUITE_TIMEOUT_MS } from './lib/tokend.mjs';
import { startFakeUpstream } from './lib/fakeupstream.mjs';
import { noteSecret, stopAndScan } from './lib/secrets.mjs';

function secret(prefix) {
  const s = `${prefix}-${uniqueId('s').replace(/[^A-Za-z0-9]/g, '')}${Math.random().toString(36).slice(2)}`;
  noteSecret(s, { kind: 'upstream' });
  return s;
}

const iso = (msFromNow) => new Date(Date.now() + msFromNow).toISOString().replace(/\.\d+Z$/, 'Z');
const HM = '\\d\\d:\\d\\d';

for (const backend of backends()) {
  describe(`diagnosis (${backend})`, { timeout: SUITE_TIMEOUT_MS }, () => {
    let t;
    let up;
    let other;
    let viewer;

    before(async () => {
      up = await startFakeUpstream();
      t = await startTokend({ backend, args: ['--refresh-timeout', '10'] });
      other = await createTenant(t);
      const v = await request(t, '/v1/operator-tokens', { method: 'POST', token: t.token, json: { name: 'viewer', role: 'viewer' } });
      assert.equal(v.status, 201, v.text);
      viewer = v.json.token;
    });
    after(async () => {
      await stopAndScan(t);
      await up?.close();
    });

    async function setup(behaviour = { kind: 'ok', rotate: true, expiresIn: 3600 }) {
      const name = uniqueId('dg').replace(/[^A-Za-z0-9]/g, '');
      const clientId = `cid-${name}`;
      const clientSecret = secret('cs');
      const refreshToken = secret('rt0');
      const accessToken = secret('at0');
      const ep = up.endpoint(name, { clientId, clientSecret, auth: 'post', refreshToken });
      ep.behave(behaviour);
      const a = await request(t, '/v1/provider-apps', {
        method: 'POST',
        token: t.token,
        json: { provider: 'generic-oauth2', name, client_id: clientId, client_secret: clientSecret, scopes: ['read'], token_url: ep.url, client_auth: 'client_secret_post' },
      });
      assert.equal(a.status, 201, a.text);
      const c = await request(t, '/v1/connections', {
        method: 'POST',
        token: t.token,
        json: { app_id: a.json.id, label: `conn ${name}`, access_token: accessToken, refresh_token: refreshToken, expires_at: iso(3600 * 1000), scopes: ['read'] },
      });
      assert.equal(c.status, 201, c.text);
      return { ep, app: a.json, conn: c.json, accessToken, refreshToken, clientSecret };
    }

    async function diagnose(s, token = t.token) {
      const d = await request(t, `/v1/connections/${s.conn.id}/diagnosis`, { token });
      assert.equal(d.status, 200, d.text);
      for (const v of [s.accessToken, s.refreshToken, s.clientSecret, s.ep.lastAccessToken, s.ep.lastRefreshToken].filter(Boolean))
        assert.ok(!d.text.includes(v), 'no token or secret in the diagnosis');
      assert.equal(d.json.connection.id, s.conn.id);
      for (const k of ['access_token', 'refresh_token']) assert.equal(d.json.connection[k], undefined);
      return d.json;
    }

    const refresh = (s) => request(t, `/v1/connections/${s.conn.id}/refresh`, { method: 'POST', token: t.token, noteSecrets: false });
    const env = () => ({ TOKEND_ADDR: t.url, TOKEND_TOKEN: t.token });

    it('ok: never refreshed yet, then ok with the next refresh; any role, tenant-scoped; doctor connection exits 0', async () => {
      const s = await setup();
      let d = await diagnose(s);
      assert.equal(d.cause, 'never_refreshed');
      assert.match(d.conclusion, new RegExp(`^never refreshed yet: token valid until ${HM}, next refresh at ${HM}$`));
      assert.deepEqual(d.attempts, []);
      assert.ok(d.token.expires_in > 3500 && d.token.expires_in <= 3600, JSON.stringify(d.token));
      assert.equal(d.token.expires_at, s.conn.expires_at);

      assert.equal((await refresh(s)).status, 200);
      d = await diagnose(s, viewer);
      assert.equal(d.cause, 'ok');
      assert.match(d.conclusion, new RegExp(`^ok: token valid until ${HM}, next refresh at ${HM}$`));
      assert.equal(d.next_step, 'nothing to do');
      assert.equal(d.attempts.length, 1);
      assert.equal(d.attempts[0].outcome, 'ok');
      assert.equal(d.attempts[0].source, 'manual');
      assert.equal(d.attempts[0].status, 200);

      assert.equal((await request(t, `/v1/connections/${s.conn.id}/diagnosis`, { token: other.token })).status, 404);
      assert.equal((await api(t, '/v1/connections/not-a-uuid/diagnosis')).status, 404);
      assert.equal((await api(t, '/v1/connections/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/diagnosis')).status, 404);

      const cli = await runCli(['doctor', 'connection', s.conn.id], { env: env() });
      assert.equal(cli.code, 0, cli.stderr + cli.stdout);
      assert.match(cli.stdout, /status +ok/);
      assert.match(cli.stdout, /attempts \(1, newest first\)/);
      assert.match(cli.stdout, /manual +ok +200/);
      assert.match(cli.stdout, /^ok: token valid until/m);
      const j = await runCli(['doctor', 'connection', s.conn.id, '--json'], { env: env() });
      assert.equal(j.code, 0, j.stderr);
      assert.equal(JSON.parse(j.stdout).cause, 'ok');
      const bad = await runCli(['doctor', 'connection'], { env: env() });
      assert.equal(bad.code, 2, bad.stderr);
    });

    it('invalid_grant: needs_reconnect, the sentence says reconnect; an old refresh token spent by an earlier refresh is named', async () => {
      const s = await setup({ kind: 'invalid_grant' });
      assert.equal((await refresh(s)).status, 409);
      let d = await diagnose(s);
      assert.equal(d.connection.status, 'needs_reconnect');
      assert.equal(d.cause, 'rejected');
      assert.match(d.conclusion, new RegExp(`^refresh token rejected \\(invalid_grant\\) at ${HM}: reconnect needed$`));
      assert.match(d.next_step, /^reconnect: /);
      assert.equal(d.attempts[0].outcome, 'failed');
      assert.equal(d.attempts[0].error_code, 'invalid_grant');
      assert.equal(d.attempts[0].status, 400);
      const l = await api(t, `/v1/connections?status=needs_reconnect&app_id=${s.app.id}`);
      assert.deepEqual(l.json.connections.map((c) => c.id), [s.conn.id]);
      const cli = await runCli(['doctor', 'connection', s.conn.id], { env: env() });
      assert.equal(cli.code, 1, cli.stderr + cli.stdout);
      assert.match(cli.stdout, /needs_reconnect \(invalid_grant, 1 failures\)/);
      assert.match(cli.stdout, /refresh token rejected \(invalid_grant\)/);

      // a copy of the row's old sealed refresh token comes back (a restored backup):
      // the rotation it already went through makes the rejection's cause plain
      const r = await setup({ kind: 'ok', rotate: true, expiresIn: 3600 });
      const tbl = `diag_${uniqueId('b').replace(/[^A-Za-z0-9]/g, '')}`;
      await storeSql(t, `CREATE TABLE ${tbl} AS SELECT id, refresh_token FROM connections WHERE id = '${r.conn.id}'`);
      assert.equal((await refresh(r)).status, 200);
      await storeSql(t, `UPDATE connections SET refresh_token = (SELECT refresh_token FROM ${tbl}) WHERE id = '${r.conn.id}'; DROP TABLE ${tbl}`);
      assert.equal((await refresh(r)).status, 409);
      d = await diagnose(r);
      assert.equal(d.cause, 'rotated_elsewhere', d.conclusion);
      assert.match(d.conclusion, new RegExp(`^refresh token rejected \\(invalid_grant\\) at ${HM} after another refresh \\(manual\\) rotated it at ${HM}: reconnect needed$`));
      assert.deepEqual(d.attempts.map((a) => a.outcome), ['failed', 'ok']);
    });

    it('repeated HTML 503: refresh_error, the sentence counts them and gives the next attempt', async () => {
      const s = await setup({ kind: 'status', status: 503, body: '<html><body>Service Unavailable</body></html>', contentType: 'text/html' });
      for (let i = 0; i < 3; i++) assert.equal((await refresh(s)).status, 502);
      const d = await diagnose(s);
      assert.equal(d.connection.status, 'refresh_error');
      assert.equal(d.cause, 'transient');
      assert.match(d.conclusion, new RegExp(`^upstream answered HTML 503 three times; next attempt ${HM}$`));
      assert.equal(d.attempts.length, 3);
      assert.ok(d.attempts.every((a) => a.outcome === 'error' && a.status === 503 && a.next_attempt_at), JSON.stringify(d.attempts));
      // JSON 500 after them: counted from the newest
      s.ep.behave({ kind: 'status', status: 500 });
      assert.equal((await refresh(s)).status, 502);
      const d2 = await diagnose(s);
      assert.match(d2.conclusion, new RegExp(`^upstream answered HTTP 500 \\(\\w+\\) four times; next attempt ${HM}$`));
      const cli = await runCli(['doctor', 'connection', s.conn.id], { env: env() });
      assert.equal(cli.code, 1);
      assert.match(cli.stdout, /four times; next attempt/);
    });

    it('a sealed value copied to another row: key/data fault, not an upstream problem', async () => {
      const s1 = await setup();
      const s2 = await setup();
      await storeSql(t, `UPDATE connections SET refresh_token = (SELECT refresh_token FROM connections WHERE id = '${s1.conn.id}') WHERE id = '${s2.conn.id}'`);
      assert.equal((await refresh(s2)).status, 409);
      assert.equal(s2.ep.requests.length, 0, 'nothing sent upstream');
      const d = await diagnose(s2);
      assert.equal(d.cause, 'key_data_fault');
      assert.match(d.conclusion, /^the stored token does not decrypt under key version \d+: key\/data fault, not an upstream problem$/);
      assert.match(d.next_step, /keyring/);
      assert.equal(d.attempts[0].error_code, 'decrypt_failed');
      assert.equal(d.attempts[0].status, null);
    });
  });
}
