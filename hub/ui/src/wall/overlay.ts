// Detection boxes over a tile's video: the latest `detections` message at or just before the
// frame on screen, drawn on a canvas laid over the video's picture (object-fit: contain).

import type { Detections } from './player';

/** Shown this long past their time on the media timeline, then hidden. */
const MAX_AGE_S = 2;
/** A message this far ahead of the current time already counts (delivery is per frame). */
const LEAD_S = 0.05;
const QUEUE_MAX = 60;

export class DetectionQueue {
  private items: Detections[] = [];

  push(d: Detections): void {
    // Kept in media-time order; a message out of order goes where it belongs.
    let i = this.items.length;
    while (i > 0 && this.items[i - 1].t > d.t) i--;
    this.items.splice(i, 0, d);
    if (this.items.length > QUEUE_MAX) this.items.splice(0, this.items.length - QUEUE_MAX);
  }

  clear(): void {
    this.items = [];
  }

  /** The detections to show at media time `now`, or null; drops those that can no longer be. */
  at(now: number): Detections | null {
    let chosen = -1;
    for (let i = 0; i < this.items.length; i++) {
      if (this.items[i].t <= now + LEAD_S) chosen = i;
      else break;
    }
    // A jump back on the timeline (a new stream) makes every queued time stale.
    if (chosen < 0 && this.items.length && this.items[0].t - now > 30) this.items = [];
    if (chosen < 0) return null;
    if (chosen > 0) this.items.splice(0, chosen);
    const d = this.items[0];
    return now - d.t > MAX_AGE_S ? null : d;
  }
}

const COLORS: Record<string, string> = { person: '#ff5252', face: '#ffd740', vehicle: '#40c4ff' };

/** Draws `d` (or nothing) on `canvas`, sized to the video element. */
export function draw(canvas: HTMLCanvasElement, video: HTMLVideoElement, d: Detections | null): void {
  const dpr = window.devicePixelRatio || 1;
  const cw = video.clientWidth;
  const ch = video.clientHeight;
  if (canvas.width !== Math.round(cw * dpr) || canvas.height !== Math.round(ch * dpr)) {
    canvas.width = Math.round(cw * dpr);
    canvas.height = Math.round(ch * dpr);
  }
  const c = canvas.getContext('2d');
  if (!c) return;
  c.setTransform(dpr, 0, 0, dpr, 0, 0);
  c.clearRect(0, 0, cw, ch);
  // How many boxes are on screen (browser tests read it).
  canvas.dataset.boxes = String(d?.boxes.length ?? 0);
  if (!d || !d.boxes.length) return;
  // The picture's rectangle inside the element (letterboxed by object-fit: contain).
  const vw = video.videoWidth || d.width || cw;
  const vh = video.videoHeight || d.height || ch;
  const scale = Math.min(cw / vw, ch / vh);
  const pw = vw * scale;
  const ph = vh * scale;
  const ox = (cw - pw) / 2;
  const oy = (ch - ph) / 2;
  c.lineWidth = 2;
  c.font = '12px system-ui, sans-serif';
  c.textBaseline = 'bottom';
  for (const b of d.boxes) {
    const color = COLORS[b.label] ?? '#69f0ae';
    const x = ox + b.x * pw;
    const y = oy + b.y * ph;
    const w = b.w * pw;
    const h = b.h * ph;
    c.strokeStyle = color;
    c.strokeRect(x, y, w, h);
    const text = `${b.label} ${Math.round(b.score * 100)}%`;
    const tw = c.measureText(text).width + 6;
    const ty = y > 16 ? y : y + 16;
    c.fillStyle = color;
    c.fillRect(x - 1, ty - 16, tw, 16);
    c.fillStyle = '#000';
    c.fillText(text, x + 2, ty - 2);
  }
}
