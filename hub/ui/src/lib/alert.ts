// The alarm for new critical findings: a short beep made with WebAudio (no audio file) and a
// flashing banner until someone clicks it.

import { signal } from '@preact/signals';
import type { Finding } from './types';

/** Critical findings not yet looked at, newest first. */
export const alerts = signal<Finding[]>([]);

let ctx: AudioContext | null = null;

/** Browsers allow audio only after a gesture: the first click or key unlocks it. */
export function unlockAudio(): void {
  const unlock = () => {
    try {
      ctx ??= new AudioContext();
      if (ctx.state === 'suspended') void ctx.resume();
    } catch {
      // No audio on this machine: the banner still flashes.
    }
  };
  window.addEventListener('pointerdown', unlock, { once: false, passive: true });
  window.addEventListener('keydown', unlock, { once: false, passive: true });
}

/** Three short tones, 880 Hz then 660 Hz then 880 Hz, about 0.6 s in all. */
export function beep(): void {
  if (!ctx || ctx.state !== 'running') return;
  const now = ctx.currentTime;
  [880, 660, 880].forEach((hz, i) => {
    const osc = ctx!.createOscillator();
    const gain = ctx!.createGain();
    osc.type = 'square';
    osc.frequency.value = hz;
    const t0 = now + i * 0.2;
    gain.gain.setValueAtTime(0.0001, t0);
    gain.gain.exponentialRampToValueAtTime(0.15, t0 + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.16);
    osc.connect(gain).connect(ctx!.destination);
    osc.start(t0);
    osc.stop(t0 + 0.18);
  });
}

export function raise(f: Finding): void {
  alerts.value = [f, ...alerts.value.filter((a) => a.id !== f.id)].slice(0, 20);
  beep();
}

export function dismissAlerts(): void {
  alerts.value = [];
}
