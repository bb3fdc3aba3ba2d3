// Glass-to-glass latency of the duty room's live video on loopback (issue 9): for every frame
// the browser presents (requestVideoFrameCallback) in a wall tile, the time it is expected on
// screen minus the time the hub received that access unit from the camera (the hub's `clock`
// messages place key frames on the media timeline with their reception time; frames between
// follow at their media time). Baseline, measured in the same run and browser: when the same
// messages reach a bare WebSocket of the page (the hub and the network's share), so the
// difference is what MSE, the decoder and the compositor add.
//
//   node bench/latency.mjs [--camera dock] [--seconds 60]
//
// Starts `hub demo` (HUB_BIN, a hub built with --features sim) and Debian's Chromium, as the
// browser tests do. Prints p50/p95/p99 and the ratio of p95 to the 500 ms target first.

import { startDemo, launchBrowser, newPage, login, until } from '../tests/harness.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const camera = arg('camera', 'dock');
const seconds = Number(arg('seconds', '60'));
const TARGET_P95_MS = 500;

const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length - 1) * p))];
};

const hub = await startDemo();
const browser = await launchBrowser();
try {
  const o = hub.user('operator');
  const { page, errors } = await newPage(browser, { width: 1280, height: 720 });
  await login(page, hub.base, o.username, o.password);
  await page.click('[data-nav=wall]');
  await page.click('[data-layout="1"]');
  await page.click(`[data-tree-camera="${camera}"]`);
  const video = `[data-camera="${camera}"] video.tile-video`;
  await until('the tile to play', 60_000, () =>
    page.$eval(video, (v) => v.currentTime > 0.5 && (v.hubClocks?.length ?? 0) > 0),
  );
  const result = await page.evaluate(
    async ({ selector, camera, ms }) => {
      const v = document.querySelector(selector);
      const glass = [];
      const wire = [];
      // The baseline: the same camera's messages on a bare socket of this page.
      const ws = new WebSocket(`ws://${location.host}/api/v1/cameras/${camera}/live`);
      ws.onmessage = (e) => {
        if (typeof e.data !== 'string') return;
        const m = JSON.parse(e.data);
        if (m.type === 'clock') wire.push(Date.now() - m.at);
      };
      const onFrame = (_now, meta) => {
        const clocks = v.hubClocks || [];
        let c = null;
        for (const k of clocks) if (k.t <= meta.mediaTime + 0.001) c = k;
        if (c) {
          const received = c.at + (meta.mediaTime - c.t) * 1000;
          const shown = performance.timeOrigin + meta.expectedDisplayTime;
          glass.push(shown - received);
        }
        if (!done) v.requestVideoFrameCallback(onFrame);
      };
      let done = false;
      v.requestVideoFrameCallback(onFrame);
      await new Promise((r) => setTimeout(r, ms));
      done = true;
      ws.close();
      return { glass, wire, dropped: v.getVideoPlaybackQuality().droppedVideoFrames };
    },
    { selector: video, camera, ms: seconds * 1000 },
  );
  const { glass, wire } = result;
  if (glass.length < 10 || wire.length < 2) throw new Error(`too few samples: ${glass.length} frames, ${wire.length} clocks`);
  const p95 = q(glass, 0.95);
  console.log(`latency bench: camera ${camera}, ${seconds} s, ${glass.length} frames presented, ${result.dropped} dropped by the player`);
  console.log(`  p95 / target (${TARGET_P95_MS} ms): ${(p95 / TARGET_P95_MS).toFixed(2)}`);
  console.log(`  glass-to-glass (hub reception → expected on screen): p50 ${q(glass, 0.5).toFixed(0)} ms, p95 ${p95.toFixed(0)} ms, p99 ${q(glass, 0.99).toFixed(0)} ms`);
  console.log(`  baseline, hub reception → a bare socket in the page (${wire.length} key frames): p50 ${q(wire, 0.5).toFixed(0)} ms, p95 ${q(wire, 0.95).toFixed(0)} ms`);
  console.log(`  what MSE, decode and compositing add (p50 difference): ${(q(glass, 0.5) - q(wire, 0.5)).toFixed(0)} ms`);
  if (errors().length) console.log(`  console errors: ${errors().join(' | ')}`);
} finally {
  await browser.close();
  await hub.stop();
}
