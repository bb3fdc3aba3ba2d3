// Supervision records in a real browser against the real hub running the demo site
// (docs/records.md): a verified finding becomes a record routed to Xi'an food; the department
// works it on a phone (claim, assign, a result with a photo, feedback, close); it subscribes a
// webhook receiver started here, which gets the next event signed and again on replay; the
// transport department of Xianyang does not see the food record; in English, a step made stale
// by the case system shows the hub's 409, and an MQTT subscription its login and topic; the
// province's own MQTT subscriber (the demo's) acknowledged its events (PUBACK in the log). The
// tests run in order on one demo hub (each builds on the record of the one before). Any console
// error fails the test that saw it. Screenshots go to hub/ui/shots/.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import zlib from 'node:zlib';
import { startDemo, launchBrowser, newPage, login, shot, until } from './harness.mjs';

/** A PNG of `w`×`h` pixels, a gradient: the photo an inspector takes of the site. */
function png(w, h) {
  const crc32 = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) {
      c ^= b;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
    }
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'ascii');
    data.copy(out, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const rows = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    const o = y * (w * 3 + 1);
    rows[o] = 0; // no filter
    for (let x = 0; x < w; x++) {
      rows[o + 1 + x * 3] = Math.round((255 * x) / w);
      rows[o + 2 + x * 3] = Math.round((255 * y) / h);
      rows[o + 3 + x * 3] = 128;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A department's case system: records every request (headers and body), answers 204. */
async function startReceiver() {
  const got = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let event = null;
      try {
        event = JSON.parse(body);
      } catch {
        // Kept as text: the assertions say what was wrong with it.
      }
      got.push({ method: req.method, url: req.url, headers: req.headers, body, event });
      res.writeHead(204).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/hooks/supervision`,
    got,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** Whether a Standard Webhooks request is signed with `secret` (`whsec_` + base64 key). */
function signedWith(req, secret) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const id = req.headers['webhook-id'];
  const ts = req.headers['webhook-timestamp'];
  const expected = crypto.createHmac('sha256', key).update(`${id}.${ts}.${req.body}`).digest('base64');
  return String(req.headers['webhook-signature'] || '')
    .split(' ')
    .some((s) => s === `v1,${expected}`);
}

/** `<input type=datetime-local>` text for a moment. */
function localInput(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

describe('supervision records', { timeout: 600_000 }, () => {
  let hub;
  let browser;
  let receiver;
  let recordId; // the record of (a), worked in (b), its events pushed in (c)
  const photo = png(64, 48);
  before(async () => {
    hub = await startDemo();
    browser = await launchBrowser();
    receiver = await startReceiver();
  });
  after(async () => {
    await receiver?.close();
    await browser?.close();
    await hub?.stop();
  });

  test('(a) verifying a fridge finding makes a record distributed to the food department', async () => {
    const o = hub.user('operator');
    const op = await newPage(browser);
    const { page } = op;
    await login(page, hub.base, o.username, o.password);
    const newest = (await hub.api('/api/v1/findings?limit=1')).items[0]?.id ?? 0;
    await hub.publish('fridge-manual', { values: { temperature_c: 21.5 } });
    // Above 16 °C at once: the critical cold-chain rule, which records.auto_severities covers.
    const finding = await until('the critical fridge finding stored', 20_000, async () => {
      const r = await hub.api('/api/v1/findings?device=fridge-manual');
      return r.items.find((f) => f.id > newest && f.severity === 'critical') ?? null;
    });
    await page.click('[data-nav=findings]');
    const row = `[data-finding="${finding.id}"]`;
    await page.waitForSelector(row, { timeout: 20_000 });
    await page.click(row);
    const detail = `[data-finding-detail="${finding.id}"]`;
    await page.click(`${detail} [data-action=verify]`);
    // The record is made in the verdict's transaction: the answer carries its id.
    const link = await page.waitForSelector(`${detail} [data-record-link]`, { timeout: 10_000 });
    recordId = Number(await link.getAttribute('data-record-link'));
    assert.ok(recordId > 0);
    assert.equal((await hub.api(`/api/v1/findings/${finding.id}`)).record_id, recordId);
    // Made automatically: the duty room is not offered a second one.
    assert.equal(await page.$$eval(`${detail} [data-action=record]`, (e) => e.length), 0);
    await shot(page, 'finding-record-link');

    const stored = await hub.api(`/api/v1/records/${recordId}`);
    assert.equal(stored.state, 'distributed', JSON.stringify(stored));
    assert.ok(stored.candidates.includes('xian-food'), JSON.stringify(stored.candidates));
    assert.ok(stored.finding_ids.includes(finding.id), JSON.stringify(stored.finding_ids));
    assert.equal(stored.severity, 'critical');
    assert.match(stored.number, /^SR-\d{8}-\d+$/);

    await page.click(`${detail} [data-record-link]`);
    const rd = `[data-record-detail="${recordId}"]`;
    await page.waitForSelector(`${rd}[data-state=distributed]`);
    await page.waitForSelector(`${rd} [data-timeline-action=create]`);
    await page.waitForSelector(`[data-record="${recordId}"][data-state=distributed][data-escalated=false]`);
    assert.equal(await page.getAttribute(`[data-record="${recordId}"]`, 'data-deadline'), stored.deadline);
    if (stored.entity?.uscc) {
      assert.equal(await page.textContent(`${rd} [data-role=uscc]`), stored.entity.uscc);
    }
    // Claiming is the department's, not the duty room's.
    assert.equal(await page.$$eval(`${rd} [data-record-action=claim]`, (e) => e.length), 0);
    await shot(page, 'record-distributed');
    assert.deepEqual(op.errors(), []);
    await op.context.close();
  });

  test('(b) the food department works the record on a phone: claim, assign, result with a photo, feedback, close', async () => {
    assert.ok(recordId, 'needs the record of (a)');
    const u = hub.user('xian');
    const phone = await newPage(browser, { width: 390, height: 844 });
    const { page } = phone;
    await login(page, hub.base, u.username, u.password);
    await page.click('[data-nav=records]');
    const card = `[data-record="${recordId}"]`;
    await page.waitForSelector(`${card}[data-state=distributed]`);
    // A phone-sized page: nothing wider than the screen.
    assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 390);
    await shot(page, 'phone-records');
    await page.click(card);
    const detail = `[data-record-detail="${recordId}"]`;
    await page.waitForSelector(`${detail} [data-record-action=claim]`);
    const claim = await page.locator(`${detail} [data-record-action=claim]`).boundingBox();
    assert.ok(claim.height >= 44, `the claim button is ${claim.height} px high`);
    await shot(page, 'phone-record');

    /** Opens an action's form, fills it, sends it, and waits for the state and timeline. */
    const step = async (action, to, fill) => {
      await page.click(`${detail} [data-record-action=${action}]`);
      const form = `${detail} form[data-record-form=${action}]`;
      await page.waitForSelector(form);
      if (fill) await fill(form);
      await page.click(`${form} button[type=submit]`);
      await page.waitForSelector(`${detail}[data-state=${to}]`, { timeout: 15_000 });
      await page.waitForSelector(`${detail} [data-action-result=ok]`);
      await page.waitForSelector(`${detail} [data-timeline-action=${action}]`);
    };
    await step('claim', 'claimed');
    await step('assign', 'assigned', async (form) => {
      await page.fill(`${form} input[name=assignee]`, '王敏');
    });
    await step('result', 'resulted', async (form) => {
      await page.fill(`${form} textarea[name=result]`, '现场检查：冷库门未关严，已督促整改，温度恢复至 4 °C');
      const input = page.locator(`${form} input[name=photo]`);
      assert.equal(await input.getAttribute('accept'), 'image/*');
      assert.equal(await input.getAttribute('capture'), 'environment');
      await input.setInputFiles({ name: 'site.png', mimeType: 'image/png', buffer: photo });
      await page.waitForSelector(`${form} img[data-preview]`);
      await shot(page, 'phone-result-form');
    });
    // The photo went up as it was and is served back.
    const attachment = await page.waitForSelector(`${detail} [data-timeline-action=result] [data-attachment]`);
    const href = await attachment.getAttribute('href');
    const bytes = await page.evaluate(async (u) => {
      const r = await fetch(u);
      return [r.status, r.headers.get('content-type'), (await r.arrayBuffer()).byteLength];
    }, href);
    assert.deepEqual(bytes, [200, 'image/png', photo.length]);
    // The thumbnail loads lazily: bring it on screen, as the inspector scrolling would.
    await page.locator(`${detail} [data-timeline-action=result] img`).scrollIntoViewIfNeeded();
    await until('the photo shown in the timeline', 10_000, () =>
      page.$eval(`${detail} [data-timeline-action=result] img`, (img) => img.complete && img.naturalWidth === 64),
    );
    const now = Date.now();
    await step('feedback', 'fed_back', async (form) => {
      await page.selectOption(`${form} select[name=kind]`, 'inspection');
      await page.fill(`${form} textarea[name=outcome]`, '责令整改，复查合格');
      await page.fill(`${form} input[name=inspected_at]`, localInput(now - 3_600_000));
      await page.fill(`${form} input[name=inspector_name]`, '李强');
      await page.fill(`${form} input[name=inspector_certificate]`, '61010020230017');
      await page.fill(`${form} input[name=reported_at]`, localInput(now));
      await page.fill(`${form} input[name=reporter]`, '王敏');
    });
    await step('close', 'closed', async (form) => {
      await page.fill(`${form} textarea[name=note]`, '整改到位');
    });

    // Every step in the timeline, in order, with who and when.
    const entries = await page.$$eval(`${detail} [data-timeline-action]`, (els) =>
      els.map((e) => ({
        action: e.getAttribute('data-timeline-action'),
        actor: e.getAttribute('data-actor'),
        who: e.querySelector('[data-role=actor]')?.textContent ?? '',
        when: e.querySelector('[data-role=at]')?.textContent ?? '',
      })),
    );
    const worked = entries.filter((e) => ['claim', 'assign', 'result', 'feedback', 'close'].includes(e.action));
    assert.deepEqual(
      worked.map((e) => e.action),
      ['claim', 'assign', 'result', 'feedback', 'close'],
      JSON.stringify(entries),
    );
    for (const e of worked) {
      assert.equal(e.actor, 'user:xian', JSON.stringify(e));
      assert.match(e.who, /xian/);
      assert.match(e.when, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    }
    await page.locator(`${detail} [data-timeline]`).scrollIntoViewIfNeeded();
    await shot(page, 'phone-record-closed');

    const stored = await hub.api(`/api/v1/records/${recordId}`);
    assert.equal(stored.state, 'closed');
    assert.equal(stored.department_id, 'xian-food');
    assert.equal(stored.assignee, '王敏');
    assert.equal(stored.deadline, 'met');
    const fed = stored.timeline.find((x) => x.action === 'feedback');
    assert.ok(fed, JSON.stringify(stored.timeline));
    const result = stored.timeline.find((x) => x.action === 'result');
    assert.equal(result.attachments.length, 1);
    assert.equal(result.attachments[0].content_type, 'image/png');
    assert.equal(result.attachments[0].size, photo.length);
    assert.deepEqual(phone.errors(), []);
    await phone.context.close();
  });

  test('(c) a subscription shows its secret once, gets the next event signed, shows it delivered and replays it', async () => {
    assert.ok(recordId, 'needs the record of (a)');
    const u = hub.user('xian');
    const d = await newPage(browser, { width: 1280, height: 800 });
    const { page } = d;
    await login(page, hub.base, u.username, u.password);
    await page.click('[data-nav=subscriptions]');
    await page.click('[data-role=new-subscription]');
    const form = 'form[data-form=subscription]';
    await page.fill(`${form} input[name=name]`, 'case system');
    await page.fill(`${form} input[name=url]`, receiver.url);
    await page.click(`${form} button[type=submit]`);
    const secret = (await (await page.waitForSelector('[data-role=secret]')).textContent()).trim();
    assert.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/);
    assert.equal(Buffer.from(secret.slice(6), 'base64').length, 24);
    const sub = (await hub.api('/api/v1/subscriptions')).items.find((s) => s.url === receiver.url);
    assert.ok(sub, 'the subscription stored');
    assert.equal(sub.department_id, 'xian-food');
    assert.equal(sub.secret, undefined, 'the secret is only in the answer that made it');
    await page.waitForSelector(`[data-subscription="${sub.id}"][data-enabled=true]`);
    await shot(page, 'subscription-secret');
    // Shown once: a fresh load of the page has no secret on it.
    await page.reload();
    await page.waitForSelector(`[data-subscription="${sub.id}"]`);
    assert.equal(await page.$$eval('[data-role=secret]', (e) => e.length), 0);

    // An action on the record: the department reopens it.
    await page.goto(`${hub.base}/#/records/${recordId}`);
    const detail = `[data-record-detail="${recordId}"]`;
    await page.click(`${detail} [data-record-action=reopen]`);
    await page.fill(`${detail} form[data-record-form=reopen] textarea[name=note]`, '复查发现温度再次超标');
    await page.click(`${detail} form[data-record-form=reopen] button[type=submit]`);
    await page.waitForSelector(`${detail}[data-state=claimed]`, { timeout: 15_000 });
    const first = await until('the receiver to get record.reopened', 30_000, () =>
      receiver.got.find((g) => g.event?.type === 'record.reopened' && g.event?.subject === `records/${recordId}`),
    );
    assert.equal(first.method, 'POST');
    assert.match(first.headers['content-type'], /^application\/cloudevents\+json/);
    assert.equal(first.event.specversion, '1.0');
    assert.equal(first.headers['webhook-id'], first.event.id);
    assert.match(first.headers['webhook-timestamp'], /^\d+$/);
    assert.ok(signedWith(first, secret), `not signed with the secret shown: ${first.headers['webhook-signature']}`);
    assert.equal(first.event.data.record.id, recordId);
    assert.equal(first.event.data.transition.action, 'reopen');
    const eventId = first.event.id;

    await page.click('[data-nav=subscriptions]');
    await page.click(`[data-subscription="${sub.id}"]`);
    const row = `[data-delivery][data-event="${eventId}"]`;
    await page.waitForSelector(`${row}[data-state=delivered]`, { timeout: 20_000 });
    await shot(page, 'subscription-deliveries');
    const before = receiver.got.filter((g) => g.headers['webhook-id'] === eventId).length;
    await page.click(`[data-replay="${eventId}"]`);
    await page.waitForSelector('[data-subscription-detail] [data-action-result=ok]');
    const again = await until('the replayed event', 30_000, () => {
      const same = receiver.got.filter((g) => g.headers['webhook-id'] === eventId);
      return same.length > before ? same[same.length - 1] : null;
    });
    assert.equal(again.event.id, eventId);
    assert.equal(again.event.type, 'record.reopened');
    assert.ok(signedWith(again, secret));
    assert.deepEqual(d.errors(), []);
    await d.context.close();
  });

  test('(d) the transport department of Xianyang does not see the food record', async () => {
    assert.ok(recordId, 'needs the record of (a)');
    const u = hub.user('xianyang');
    const d = await newPage(browser, { width: 1024, height: 768 });
    const { page } = d;
    await login(page, hub.base, u.username, u.password);
    await page.click('[data-nav=records]');
    await page.waitForSelector('[data-records-list][data-list-state=idle]', { state: 'attached' });
    assert.equal(await page.$$eval(`[data-record="${recordId}"]`, (e) => e.length), 0);
    const shown = await page.$$eval('[data-record]', (els) => els.map((e) => Number(e.getAttribute('data-record'))));
    // Whatever it lists lies in its scope: transport, Xianyang (610400).
    for (const id of shown) {
      const r = await hub.api(`/api/v1/records/${id}`);
      assert.ok(r.industry === 'transport' && r.region.startsWith('6104'), `record ${id} (${r.industry}, ${r.region}) shown`);
    }
    await shot(page, 'xianyang-records');
    assert.deepEqual(d.errors(), []);
    // Out of its scope the record does not exist for it (404), asked for directly.
    const seen = d.errors().length;
    await page.goto(`${hub.base}/#/records/${recordId}`);
    await page.waitForSelector('[data-role=record-error]');
    assert.equal(await page.evaluate(async (id) => (await fetch(`/api/v1/records/${id}`)).status, recordId), 404);
    // The browser logs the refused requests themselves; nothing else.
    assert.deepEqual(d.errors().slice(seen).filter((e) => !/404/.test(e)), []);
    await d.context.close();
  });

  test('(e) in English: a step the case system made stale answers 409 naming the state; an MQTT subscription shows its login and topic', async () => {
    assert.ok(recordId, 'needs the record of (a)');
    const u = hub.user('xian');
    const d = await newPage(browser, { width: 1280, height: 800 });
    const { page } = d;
    await login(page, hub.base, u.username, u.password);
    await page.click('[data-lang=en]');
    await page.goto(`${hub.base}/#/records/${recordId}`);
    const detail = `[data-record-detail="${recordId}"]`;
    // After (c) the record is claimed again: the page offers assign.
    await page.waitForSelector(`${detail}[data-state=claimed]`);
    await page.waitForSelector(`${detail} [data-record-action=assign]`);
    // Meanwhile the department's case system, with its own token, assigns and enters a result.
    const tok = await hub.api('/api/v1/tokens', {
      method: 'POST',
      body: JSON.stringify({ name: 'xian case system', roles: ['department'], department: 'xian-food', expires_in_days: 1 }),
    });
    const asSystem = (p, body) =>
      fetch(`${hub.base}${p}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${tok.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    for (const [action, body] of [
      ['assign', { assignee: '赵磊' }],
      ['result', { result: '已现场整改' }],
    ]) {
      const r = await asSystem(`/api/v1/records/${recordId}/${action}`, body);
      assert.equal(r.status, 200, `${action}: ${await r.text()}`);
    }
    // The stale page's assign: the hub's 409 is shown as it says what holds now.
    const seen = d.errors().length;
    await page.click(`${detail} [data-record-action=assign]`);
    const form = `${detail} form[data-record-form=assign]`;
    await page.fill(`${form} input[name=assignee]`, '王敏');
    await page.click(`${form} button[type=submit]`);
    const err = await page.waitForSelector(`${detail} [data-action-result=error]`);
    const text = await err.textContent();
    assert.match(text, new RegExp(`record ${recordId} is resulted; assign is allowed from claimed, assigned \\(allowed now: feedback\\)`), text);
    // The page then shows the record as stored: resulted, with feedback to give next.
    await page.waitForSelector(`${detail}[data-state=resulted] [data-record-action=feedback]`);
    await page.waitForSelector(`[data-record="${recordId}"][data-state=resulted]`);
    assert.ok(await page.isVisible(`${detail} [data-action-result=error]`), 'the refusal stays readable');
    await shot(page, 'record-conflict-en');
    // The refused request is the one console line; nothing else.
    assert.deepEqual(d.errors().slice(seen).filter((e) => !/409/.test(e)), []);

    // An MQTT subscription: no URL to give; the page names the login and the topic.
    await page.click('[data-nav=subscriptions]');
    await page.click('[data-role=new-subscription]');
    const sform = 'form[data-form=subscription]';
    await page.fill(`${sform} input[name=name]`, 'case system over MQTT');
    await page.selectOption(`${sform} select[name=transport]`, 'mqtt');
    assert.equal(await page.$$eval(`${sform} input[name=url]`, (e) => e.length), 0);
    await page.click(`${sform} button[type=submit]`);
    const sub = await until('the MQTT subscription stored', 15_000, async () =>
      (await hub.api('/api/v1/subscriptions')).items.find((s) => s.transport === 'mqtt' && s.department_id === 'xian-food'),
    );
    assert.equal(sub.mqtt.username, 'department:xian-food');
    assert.equal(sub.mqtt.topic, `departments/xian-food/records/${sub.id}`);
    await page.click(`[data-subscription="${sub.id}"]`);
    const shown = await (await page.waitForSelector('[data-subscription-detail]')).textContent();
    assert.ok(shown.includes(sub.mqtt.topic) && shown.includes(sub.mqtt.username), shown);
    assert.equal(await page.$$eval('[data-subscription-action=rotate]', (e) => e.length), 0, 'no secret to rotate');
    await shot(page, 'subscription-mqtt-en');
    await d.context.close();
  });

  test('(f) the province reads its record events over MQTT: the demo subscriber acknowledged them (PUBACK in the log)', async () => {
    assert.ok(recordId, 'needs the record of (a)');
    const u = hub.user('province');
    const d = await newPage(browser, { width: 1280, height: 800 });
    const { page } = d;
    await login(page, hub.base, u.username, u.password);
    await page.click('[data-lang=en]');
    const sub = (await hub.api('/api/v1/subscriptions')).items.find(
      (s) => s.transport === 'mqtt' && s.department_id === 'shaanxi-market',
    );
    assert.ok(sub, 'the demo subscribes the province over MQTT');
    await page.click('[data-nav=subscriptions]');
    await page.click(`[data-subscription="${sub.id}"]`);
    const row = `[data-subscription-detail] [data-delivery][data-state=delivered]`;
    await page.waitForSelector(row, { timeout: 20_000 });
    assert.equal((await page.textContent(`${row} td:nth-child(6)`)).trim(), 'PUBACK');
    await shot(page, 'subscription-mqtt-deliveries-en');
    assert.deepEqual(d.errors(), []);
    await d.context.close();
  });
});
