// The web console in Debian's headless Chromium, against a real toolgate started by
// proxy/tests/console_browser.rs, which passes in the environment:
//   TOOLGATE_URL           the server, e.g. http://127.0.0.1:40123
//   TOOLGATE_ADMIN_TOKEN   its admin token
//   TOOLGATE_TENANT_ADMIN_TOKEN  the admin token of tenant `t1`
//   TOOLGATE_AGENT_TOKENS  JSON {"reader", "writer", "victim", "hostile", "tenant"}: agent JWTs for upstream
//                          `demo` (all of no tenant but `tenant`, agent `tenant-agent` of tenant `t1`)
//   SCREENSHOT_DIR         where each page's PNG goes
// Lines on stdout talk to the Rust side: `STEP <what>` (progress), `SKIP <why>` (a step that cannot run on this
// server yet), `TAMPER <event id>` (then the script waits for `TAMPERED` on stdin), `BREAK_POLICY` and
// `FIX_POLICY` (a broken module added to the policy folder, then removed; each answered `OK`) and `DONE` at the
// end. Any failed check throws: the script exits non-zero with the reason on stderr.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const BASE = process.env.TOOLGATE_URL;
const ADMIN = process.env.TOOLGATE_ADMIN_TOKEN;
const TENANT_ADMIN = process.env.TOOLGATE_TENANT_ADMIN_TOKEN;
const TOKENS = JSON.parse(process.env.TOOLGATE_AGENT_TOKENS);
const SHOTS = process.env.SCREENSHOT_DIR;
const WAIT = 15000;
// A tool name an attacker would choose: shown as text it is harmless; parsed as HTML it would run.
const HOSTILE_TOOL = '<img src=x onerror="window.__pwned=1">';
const HOSTILE_PATH = '/workspace/<img src=x onerror=window.__pwned=2>.txt';
const META = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };

const say = (line) => process.stdout.write(line + '\n');
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

/** One JSON-RPC request of an agent to upstream `demo` (stateless era): `{ status, message }`. */
let nextId = 1;
async function mcp(agent, method, params) {
  const resp = await fetch(`${BASE}/mcp/demo`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${TOKENS[agent]}`,
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: nextId++, method, params: { ...params, _meta: META } }),
  });
  const body = await resp.text();
  let message = null;
  if ((resp.headers.get('content-type') || '').startsWith('text/event-stream')) {
    const data = body.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)));
    message = data.reverse().find((m) => m.id !== undefined) || null;
  } else if (body) {
    message = JSON.parse(body);
  }
  return { status: resp.status, message };
}

const call = (agent, name, args) => mcp(agent, 'tools/call', { name, arguments: args });

/** An agent's POST to the runs API (`/api/v1/runs…`) with its own token: `{ status, body }`. */
async function runs(agent, path, body) {
  const resp = await fetch(`${BASE}/api/v1/runs${path}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${TOKENS[agent]}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: resp.status, body: await resp.json() };
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Navigates to a console route and waits for that page (not the one before it) to show `ready`. */
async function goto(page, route, ready) {
  await page.evaluate((r) => {
    location.hash = r;
  }, route);
  await page.waitForFunction((r) => document.querySelector('#page > .page')?.dataset.route === r, route, { timeout: WAIT });
  await page.locator(ready).first().waitFor({ timeout: WAIT });
}

/** The feed row of an event: every text in `texts` appears in it. */
function feedRow(page, ...texts) {
  let rows = page.locator('#feed-table tr.feed-row');
  for (const t of texts) rows = rows.filter({ hasText: t });
  return rows.first();
}

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const violations = [];
  page.on('console', (msg) => {
    const text = msg.text();
    if (/Content Security Policy|Refused to/i.test(text)) violations.push(text);
  });
  page.on('pageerror', (e) => violations.push('uncaught: ' + e.message));

  // The first live feed connection is answered here with one event and an id, then ends; the console must
  // reconnect on its own and send that id back as Last-Event-ID.
  const replayed = {
    id: 'replayed-event-1', event_type: 'tool_call', timestamp: new Date().toISOString(), agent_id: 'replayed-agent',
    tool_name: 'replayed_tool', policy_result: 'allow', dlp_findings: [], extra: {},
  };
  let streams = 0;
  let resumedWith;
  await context.route('**/api/v1/audit/stream*', async (route) => {
    streams += 1;
    if (streams === 1) {
      await route.fulfill({
        status: 200,
        headers: { 'content-type': 'text/event-stream' },
        body: `: hello\n\nid: console-test-cursor-1\nevent: tool_call\ndata: ${JSON.stringify(replayed)}\n\n`,
      });
      return;
    }
    if (streams === 2) resumedWith = route.request().headers()['last-event-id'];
    await route.continue();
  });

  say('STEP a wrong token shows a clear message and nothing else');
  await page.goto(`${BASE}/ui/`);
  await page.locator('#token').fill('not-the-admin-token');
  await page.locator('#login-form button[type=submit]').click();
  await page.locator('#login-error').waitFor({ state: 'visible', timeout: WAIT });
  assert.match(await page.locator('#login-error').textContent(), /refused \(401 unauthorized\)/);
  assert.equal(await page.locator('#shell').isVisible(), false);
  assert.equal(await page.locator('#page').evaluate((p) => p.childElementCount), 0);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused token is not kept');
  assert.equal(streams, 0, 'no feed is opened before sign-in');
  await shot(page, 'login');

  say('STEP sign in');
  await page.locator('#token').fill(ADMIN);
  await page.locator('#login-form button[type=submit]').click();
  await page.locator('#page-overview').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#login').isVisible(), false);

  say('STEP the feed reconnects with Last-Event-ID');
  await goto(page, '#/feed', '#feed-table');
  await feedRow(page, 'replayed-agent').waitFor({ timeout: WAIT });
  await page.waitForFunction(() => document.getElementById('feed-status').textContent === 'live', null, { timeout: WAIT });
  assert.ok(streams >= 2, 'the console reconnected after the first connection ended');
  assert.equal(resumedWith, 'console-test-cursor-1');

  say('STEP an agent call appears in the live feed');
  await mcp('reader', 'tools/list', {});
  const read = await call('reader', 'read_file', { path: '/workspace/readme.txt' });
  assert.equal(read.message.result.isError, false, JSON.stringify(read.message));
  const readRow = feedRow(page, 'readme.txt', 'tool_call');
  await readRow.waitFor({ timeout: WAIT });
  assert.match(await readRow.getAttribute('class'), /result-allow/);
  assert.match(await readRow.textContent(), /reader/);
  const readEventId = await readRow.getAttribute('data-id');

  say('STEP filters and pause');
  await page.locator('select[aria-label="result"]').selectOption('deny');
  await readRow.waitFor({ state: 'detached', timeout: WAIT });
  await page.locator('select[aria-label="result"]').selectOption('');
  await readRow.waitFor({ timeout: WAIT });
  await page.locator('#feed-pause').click();
  await call('reader', 'read_file', { path: '/etc/passwd' });
  await page.waitForFunction(() => /new/.test(document.getElementById('feed-paused').textContent), null, { timeout: WAIT });
  assert.equal(await feedRow(page, '/etc/passwd').count(), 0, 'a paused feed shows nothing new');
  await page.locator('#feed-pause').click();
  const deniedRow = feedRow(page, '/etc/passwd');
  await deniedRow.waitFor({ timeout: WAIT });
  assert.match(await deniedRow.getAttribute('class'), /result-deny/);

  say('STEP hostile text is shown as text');
  await call('hostile', HOSTILE_TOOL, {});
  const hostileRow = feedRow(page, HOSTILE_TOOL);
  await hostileRow.waitFor({ timeout: WAIT });
  assert.equal(await hostileRow.locator('td.tool').textContent(), HOSTILE_TOOL);
  await hostileRow.click();
  await page.locator('#event-fields').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#event-fields tr[data-field=tool_name] td').textContent(), HOSTILE_TOOL);
  assert.equal(await page.evaluate(() => document.querySelectorAll('#page img').length), 0, 'no element was made from event text');
  assert.equal(await page.evaluate(() => window.__pwned), undefined);

  say('STEP event detail: findings by type and path, trace id, verify an intact chain');
  await call('reader', 'read_file', { path: '/workspace/deploy.env' });
  await goto(page, '#/feed', '#feed-table');
  const leakRow = feedRow(page, 'deploy.env', 'tool_result');
  await leakRow.waitFor({ timeout: WAIT });
  const leakEventId = await leakRow.getAttribute('data-id');
  await leakRow.click();
  await page.locator('#event-findings table').waitFor({ timeout: WAIT });
  const findings = await page.locator('#event-findings').textContent();
  for (const expected of ['aws_access_key', 'aws_secret_key', '/content/0/text']) assert.ok(findings.includes(expected), `${expected} in ${findings}`);
  assert.ok(!findings.includes('AKIAZ7EXAMPLE4DEMO7Q'), 'the matched value is never shown');
  assert.match(await page.locator('#event-trace').textContent(), /^[0-9a-f]{32}$/);
  await page.locator('#verify-chain').click();
  await page.locator('#verify-outcome .notice').waitFor({ timeout: WAIT });
  assert.match(await page.locator('#verify-outcome').textContent(), /Chain intact: \d+ events verified/);
  await shot(page, 'event');
  await goto(page, '#/feed', '#feed-table');
  await shot(page, 'feed');

  say('STEP escalation queue: count in the title, approve with one click, the retry passes');
  const write = { path: '/workspace/console.txt', content: 'approved in the console' };
  const held = await call('writer', 'write_file', write);
  assert.equal(held.message.error.code, -31002, JSON.stringify(held.message));
  const escalationId = held.message.error.data.escalation_id;
  const hostileHeld = await call('writer', 'write_file', { path: HOSTILE_PATH, content: 'x' });
  assert.equal(hostileHeld.message.error.code, -31002, JSON.stringify(hostileHeld.message));
  const hostileId = hostileHeld.message.error.data.escalation_id;
  await goto(page, '#/escalations', '#escalation-table');
  const pendingRow = page.locator(`#escalation-table tr[data-id="${escalationId}"]`);
  await pendingRow.waitFor({ timeout: WAIT });
  await page.waitForFunction(() => document.title === '(2) toolgate', null, { timeout: WAIT });
  const hostileEscalation = page.locator(`#escalation-table tr[data-id="${hostileId}"]`);
  assert.ok((await hostileEscalation.locator('td.target').textContent()).includes('<img src=x onerror=window.__pwned=2>'));
  assert.match(await pendingRow.textContent(), /pending/);
  assert.match(await pendingRow.textContent(), /toolgate\.filesystem\.write_review/);
  await shot(page, 'escalations');
  await pendingRow.locator('button.approve').click();
  await page.waitForFunction(() => document.title === '(1) toolgate', null, { timeout: WAIT });
  await page.locator(`#escalation-table tr[data-id="${escalationId}"].escalation-approved`).waitFor({ timeout: WAIT });
  await page.locator(`#escalation-table tr[data-id="${hostileId}"] button.deny`).click();
  await page.waitForFunction(() => document.title === 'toolgate', null, { timeout: WAIT });
  const retry = await call('writer', 'write_file', write);
  assert.equal(retry.message.result && retry.message.result.isError, false, JSON.stringify(retry.message));
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(await page.evaluate(() => document.querySelectorAll('#page img').length), 0);

  say('STEP agents: disable refuses the next call');
  const before = await call('victim', 'read_file', { path: '/workspace/readme.txt' });
  assert.equal(before.status, 200);
  await goto(page, '#/agents', '#agent-table, #agents-unavailable');
  if (await page.locator('#agents-unavailable').count()) {
    say('SKIP kill switch: this server answers 404 for /api/v1/agents; the agents page says it is not available');
  } else {
    // The server adds calls to the agents' counts about once a second: refresh until the victim is listed.
    const victim = page.locator('#agent-table tr[data-agent="victim"]');
    for (let tries = 0; (await victim.count()) === 0; tries += 1) {
      assert.ok(tries < 30, 'the victim agent is listed');
      await page.waitForTimeout(500);
      await page.locator('#page-agents .page-head button').click();
    }
    await victim.locator('button.deny').click();
    await page.locator('#agent-table tr[data-agent="victim"].agent-disabled').waitFor({ timeout: WAIT });
    const refused = await call('victim', 'read_file', { path: '/workspace/readme.txt' });
    assert.equal(refused.status, 403, JSON.stringify(refused.message));
    await shot(page, 'agents-disabled');
    await page.locator('#agent-table tr[data-agent="victim"] button.approve').click();
    await page.locator('#agent-table tr[data-agent="victim"]:not(.agent-disabled)').waitFor({ timeout: WAIT });
    const after = await call('victim', 'read_file', { path: '/workspace/readme.txt' });
    assert.equal(after.status, 200, JSON.stringify(after.message));
  }
  await shot(page, 'agents');

  say('STEP tool definitions, alerts, SIEM, policy');
  await goto(page, '#/tools', '#tool-table');
  assert.ok((await page.locator('#tool-table').textContent()).includes('read_file'));
  await shot(page, 'tools');
  // A request carrying a key: refused. The deploy.env result above opened reader's dlp_critical alert already
  // (one open per kind and agent); it is listed named by type, never by value.
  const leak = await call('reader', 'echo', { text: 'AKIAZ7EXAMPLE4DEMO7Q' });
  assert.equal(leak.message.error.code, -31001, JSON.stringify(leak.message));
  await goto(page, '#/alerts', '#alert-table, #alerts-unavailable, #page-alerts .notice-info');
  const critical = page.locator('#alert-table tr[data-kind="dlp_critical"]');
  await critical.waitFor({ timeout: WAIT });
  assert.ok(!(await page.locator('#alert-table').textContent()).includes('AKIAZ7EXAMPLE4DEMO7Q'), 'the key is never shown');
  // The kind filter: another kind hides it, the alert's own kind shows it alone, any kind shows it again.
  await page.locator('#alert-kind').selectOption('deny_spike');
  await page.locator('#page-alerts .notice-info').waitFor({ timeout: WAIT });
  await page.locator('#alert-kind').selectOption('dlp_critical');
  await critical.waitFor({ timeout: WAIT });
  const kinds = await page.locator('#alert-table tr.alert-row').evaluateAll((rows) => rows.map((r) => r.dataset.kind));
  assert.ok(kinds.length > 0 && kinds.every((k) => k === 'dlp_critical'), JSON.stringify(kinds));
  await page.locator('#alert-kind').selectOption('');
  await critical.waitFor({ timeout: WAIT });
  await shot(page, 'alerts');
  await critical.locator('button.ack').click();
  await page.locator('#page-alerts .notice-ok').waitFor({ timeout: WAIT });
  await page.locator('#alert-table tr[data-kind="dlp_critical"]').waitFor({ state: 'detached', timeout: WAIT });
  say('STEP agent runs');
  const started = await runs('reader', '', { objective: `summarise ${HOSTILE_TOOL}`, plan: ['read', 'summarise'] });
  assert.equal(started.status, 200, JSON.stringify(started.body));
  const runId = started.body.run_id;
  const inRun = await fetch(`${BASE}/mcp/demo`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${TOKENS.reader}`,
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      'Toolgate-Run-Id': runId,
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name: 'read_file', arguments: { path: '/workspace/readme.txt' }, _meta: META } }),
  });
  assert.equal(inRun.status, 200);
  const finished = await runs('reader', `/${runId}/finish`, { status: 'succeeded', artifacts: ['summary.md'] });
  assert.equal(finished.status, 200, JSON.stringify(finished.body));
  await goto(page, '#/runs', '#run-table');
  const runRow = page.locator(`#run-table tr[data-run="${runId}"]`);
  await runRow.waitFor({ timeout: WAIT });
  const runText = await runRow.textContent();
  assert.ok(runText.includes('succeeded') && runText.includes(HOSTILE_TOOL), runText);
  assert.equal(await runRow.locator('td.num').nth(1).textContent(), '1', 'the call in the run is counted');
  await page.locator('#runs-status').selectOption('running');
  await page.locator('#page-runs .notice-info').waitFor({ timeout: WAIT });
  await page.locator('#runs-status').selectOption('');
  await runRow.waitFor({ timeout: WAIT });
  await shot(page, 'runs');
  await goto(page, '#/siem', '#sink-table, #siem-unavailable, #page-siem .notice-info');
  await shot(page, 'siem');
  await goto(page, '#/policy', '#policy-revision');
  assert.match(await page.locator('#policy-revision').textContent(), /^sha256:[0-9a-f]{64}$/);
  assert.ok((await page.locator('#policy-modules').textContent()).includes('toolgate/main.rego'));
  assert.match(await page.locator('#last-reload').textContent(), /Loaded/);
  await shot(page, 'policy');

  say('STEP a refused policy reload names file:line:col');
  say('BREAK_POLICY');
  assert.equal((await lines.next()).value, 'OK');
  await page.locator('#page-policy .page-head button').click();
  await page.locator('#reload-error-at').waitFor({ timeout: WAIT });
  assert.match(await page.locator('#reload-error-at').textContent(), /console_broken\.rego:\d+:\d+$/);
  assert.match(await page.locator('#last-reload').textContent(), /Refused/);
  await shot(page, 'policy-error');
  say('FIX_POLICY');
  assert.equal((await lines.next()).value, 'OK');
  await page.locator('#page-policy .page-head button').click();
  await page.waitForFunction(() => /Loaded/.test(document.getElementById('last-reload')?.textContent || ''), null, { timeout: WAIT });

  say('STEP overview charts');
  await goto(page, '#/overview', '#calls-per-minute svg');
  assert.ok((await page.locator('#calls-per-minute rect.bar-allow').count()) > 0, 'allowed calls are drawn');
  assert.ok((await page.locator('#calls-per-minute rect.bar-deny').count()) > 0, 'denied calls are drawn');
  assert.ok((await page.locator('#calls-per-minute rect.bar-escalate').count()) > 0, 'escalated calls are drawn');
  const ranking = await page.locator('#page-overview .two').textContent();
  assert.ok(ranking.includes('reader') && ranking.includes('read_file'), ranking);
  await shot(page, 'overview');

  say('STEP verify finds the first bad row of a tampered log');
  say(`TAMPER ${readEventId}`);
  const answer = await lines.next();
  assert.equal(answer.value, 'TAMPERED');
  await goto(page, `#/event/${encodeURIComponent(leakEventId)}`, '#verify-chain');
  await page.locator('#verify-chain').click();
  await page.locator('#verify-outcome .notice').waitFor({ timeout: WAIT });
  assert.match(await page.locator('#verify-outcome').textContent(), /Chain broken/);
  assert.equal(await page.locator('#first-bad-row').textContent(), readEventId);
  await shot(page, 'verify-tampered');

  say('STEP bad addresses get a clear message');
  for (const [route, expected] of [
    ['#/event/no-such-event', 'There is no audit event with this id.'],
    ['#/event/%E0%A4%A', 'This link is malformed.'],
    ['#/nowhere', 'There is no console page named nowhere.'],
  ]) {
    await goto(page, route, '#page .notice');
    assert.equal(await page.locator('#page .notice').first().textContent(), expected, route);
  }

  say('STEP log out');
  await page.locator('#logout').click();
  await page.locator('#login').waitFor({ state: 'visible', timeout: WAIT });
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.equal(await page.locator('#page').evaluate((p) => p.childElementCount), 0);

  say("STEP a tenant's admin sees its tenant alone, and no page of what belongs to no tenant");
  assert.equal((await call('tenant', 'echo', { text: 'from a tenant' })).status, 200);
  await page.locator('#token').fill(TENANT_ADMIN);
  await page.locator('#login-form button[type=submit]').click();
  await page.locator('#scope').waitFor({ state: 'visible', timeout: WAIT });
  await goto(page, '#/overview', '#calls-per-minute svg');
  for (const hidden of ['tools', 'siem', 'policy']) {
    assert.ok(await page.locator(`#nav a[data-page="${hidden}"]`).isHidden(), `${hidden} is not offered`);
  }
  assert.ok(await page.locator('#nav a[data-page="escalations"]').isVisible());
  await goto(page, '#/feed', '#feed-table');
  const tenantRow = feedRow(page, 'tenant-agent');
  await tenantRow.waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#feed-table tr.feed-row').filter({ hasText: 'reader' }).count(), 0, 'no event of another tenant');
  await tenantRow.click();
  await page.locator('#verify-chain').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#verify-chain').textContent(), 'Verify chain');
  await page.locator('#verify-chain').click();
  await page.locator('#verify-outcome .notice').waitFor({ timeout: WAIT });
  // The row tampered with above is not the tenant's: it is told where the log breaks, not which row it is.
  const tenantOutcome = await page.locator('#verify-outcome').textContent();
  assert.match(tenantOutcome, /Chain broken/);
  assert.match(tenantOutcome, /another tenant/);
  assert.match(tenantOutcome, /of this tenant's events verified/);
  assert.equal(await page.locator('#first-bad-row').textContent(), '—');
  assert.ok(!tenantOutcome.includes(readEventId), tenantOutcome);
  await shot(page, 'tenant-event');
  await page.locator('#logout').click();
  await page.locator('#login').waitFor({ state: 'visible', timeout: WAIT });
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  assert.deepEqual(violations, [], 'no CSP violation or uncaught error');
  await browser.close();
  say('DONE');
  stdin.close();
}

main().catch((e) => {
  process.stderr.write((e && e.stack) || String(e));
  process.stderr.write('\n');
  process.exit(1);
});
