// The browser tests' world: a real `hub demo` (its simulated site, cameras and accounts) on
// free ports in a scratch folder, and Debian's Chromium driven by playwright-core. Nothing is
// downloaded: HUB_BIN is a hub built with `--features sim` (scripts/test builds it), the
// browser is /usr/bin/chromium (HUB_CHROMIUM), the models and clips are the shared data's.

import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../../..');
export const SHOTS = path.join(HERE, '..', 'shots');

function need(cond, message) {
  if (!cond) throw new Error(message);
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it returns a truthy value (returned) or `ms` pass (throws, naming `what`). */
export async function until(what, ms, f, every = 250) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${ms / 1000} s waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await sleep(every);
  }
}

/** A running demo hub: its base URL, credentials, an admin `api()` and `stop()`. */
export async function startDemo() {
  const bin = process.env.HUB_BIN || path.join(ROOT, 'target', 'debug', 'hub');
  need(
    fs.existsSync(bin),
    `no hub binary at ${bin}: build one with \`cargo build -p hub --features sim\` (scripts/test does) or set HUB_BIN`,
  );
  const models = [path.join(ROOT, 'models')];
  const mirror = process.env.HUB_MODEL_MIRROR || path.join(ROOT, '..', 'shared', 'data', 'models');
  need(
    fs.existsSync(mirror),
    `the shared models are not at ${mirror}: the demo cameras need them (set HUB_MODEL_MIRROR or put ../shared/data beside the checkout)`,
  );
  models.push(mirror);
  const clips = path.join(ROOT, '..', 'shared', 'data', 'videos');
  need(fs.existsSync(clips), `the shared sample clips are not at ${clips}: the demo cameras play them`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hub-ui-test-'));
  const [http, mqtt] = [await freePort(), await freePort()];
  const args = ['demo', '--http', `127.0.0.1:${http}`, '--mqtt', `127.0.0.1:${mqtt}`, '--data-dir', dir];
  for (const m of models) args.push('--models', m);
  args.push('--clips', clips);
  const log = fs.openSync(path.join(dir, 'hub.log'), 'a');
  const child = spawn(bin, args, {
    stdio: ['ignore', log, log],
    env: { ...process.env, HUB_LOG: process.env.HUB_LOG || 'info' },
  });
  let exited = null;
  child.on('exit', (code, signal) => (exited = { code, signal }));
  const base = `http://127.0.0.1:${http}`;
  const credPath = path.join(dir, 'demo-credentials.json');
  try {
    await until('the demo hub to start', 120_000, async () => {
      if (exited) throw new Error(`hub demo exited (${JSON.stringify(exited)}); see ${path.join(dir, 'hub.log')}`);
      if (!fs.existsSync(credPath)) return false;
      const creds = JSON.parse(fs.readFileSync(credPath, 'utf8'));
      if (!creds.admin_token) return false;
      const r = await fetch(`${base}/api/v1/cameras`, { headers: { authorization: `Bearer ${creds.admin_token.token}` } });
      return r.ok;
    });
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${e.message}\n--- hub.log ---\n${fs.readFileSync(path.join(dir, 'hub.log'), 'utf8').slice(-4000)}`);
  }
  const creds = JSON.parse(fs.readFileSync(credPath, 'utf8'));
  const token = creds.admin_token.token;
  const api = async (p, init = {}) => {
    const r = await fetch(`${base}${p}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(init.headers || {}) },
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${init.method || 'GET'} ${p}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const user = (name) => {
    const u = creds.users.find((x) => x.username === name);
    need(u, `no demo user ${name} in ${credPath}`);
    return u;
  };
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      await until('the demo hub to stop', 20_000, async () => exited).catch(() => child.kill('SIGKILL'));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  /** Publishes one MQTT message as a demo device (mosquitto_pub, QoS 1). */
  const publish = (device, payload) => {
    const d = creds.devices.find((x) => x.device_id === device);
    need(d, `no demo device ${device}`);
    return new Promise((resolve, reject) =>
      execFile(
        'mosquitto_pub',
        ['-h', '127.0.0.1', '-p', String(mqtt), '-u', d.username, '-P', d.secret, '-q', '1', '-t', d.telemetry_topic, '-m', JSON.stringify(payload)],
        (err, _out, stderr) => (err ? reject(new Error(`mosquitto_pub: ${err.message} ${stderr}`)) : resolve()),
      ),
    );
  };
  return { base, creds, api, user, stop, publish, dir };
}

/** Debian's Chromium, headless, with the flags this machine needs. */
export async function launchBrowser() {
  const exe = process.env.HUB_CHROMIUM || '/usr/bin/chromium';
  need(fs.existsSync(exe), `no Chromium at ${exe}: install Debian's package (apt-get install chromium; scripts/test does)`);
  return chromium.launch({
    executablePath: exe,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
}

/**
 * A new page in its own context (its own cookies and storage) that records console errors
 * and page errors; `errors()` lists them (a test fails on any).
 */
export async function newPage(browser, { width = 1920, height = 1080 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  return { page, context, errors: () => errors.slice() };
}

/** Logs in through the login page. */
export async function login(page, base, username, password) {
  await page.goto(`${base}/`);
  await page.waitForSelector('form[data-form=login]');
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  await page.click('form[data-form=login] button[type=submit]');
  await page.waitForSelector('[data-nav]');
}

export async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

/** A tile's video progress: [currentTime, totalVideoFrames]. */
export async function progress(page, camera) {
  return page.$eval(`[data-camera="${camera}"] video.tile-video`, (v) => [
    v.currentTime,
    v.getVideoPlaybackQuality().totalVideoFrames,
  ]);
}
