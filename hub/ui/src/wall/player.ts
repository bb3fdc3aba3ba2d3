// One tile's live video: the camera's WebSocket (GET /api/v1/cameras/{id}/live) fed into Media
// Source Extensions. The socket says `init` (codec, size) and sends the init segment, then one
// fMP4 fragment per access unit from a key frame on; a new `init` may come at any time (the
// camera reconnected), and then the media is started afresh. Playback is held at the live
// edge, the buffer trimmed to the last seconds, and the socket reopened forever with backoff.

export interface InitInfo {
  codec: string;
  width: number;
  height: number;
}

export interface Box {
  label: string;
  score: number;
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface Detections {
  /** Seconds on the video's media timeline (comparable to `video.currentTime`). */
  t: number;
  width: number;
  height: number;
  boxes: Box[];
}

/** A key frame's place on the media timeline and when the hub received it (Unix ms). */
export interface Clock {
  t: number;
  at: number;
}

/** How far behind the hub's reception the picture on screen is, in ms (null: not known yet). */
export function liveDelay(video: HTMLVideoElement, clocks: Clock[], nowMs = Date.now()): number | null {
  const t = video.currentTime;
  let c: Clock | null = null;
  for (const k of clocks) if (k.t <= t + 0.001) c = k;
  if (!c) return null;
  return nowMs - (c.at + (t - c.t) * 1000);
}

export type PlayerStatus =
  | { kind: 'connecting' }
  /** Connected; no frame yet (the camera may be offline). */
  | { kind: 'waiting' }
  | { kind: 'playing' }
  | { kind: 'reconnecting'; inMs: number }
  /** The browser cannot play the camera's codec. */
  | { kind: 'unsupported'; codec: string };

export interface PlayerEvents {
  status(s: PlayerStatus): void;
  init(i: InitInfo): void;
  /** Total frames the server skipped for this viewer since the tile started. */
  dropped(total: number): void;
  detections(d: Detections): void;
}

/** Backoff of reconnections: 1 s doubling to 30 s, ±20 % jitter. */
export function backoff(attempt: number): number {
  const base = Math.min(30_000, 1000 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** How far behind the newest frame received playback aims to be, and when it jumps. */
const TARGET_LAG_S = 0.1;
const JUMP_LAG_S = 1.5;
/** Keep this much behind the current time; remove what is older. */
const KEEP_BEHIND_S = 10;
/** Trim only when this much more has gathered (fewer remove operations). */
const TRIM_SLACK_S = 5;
/** Appends waiting for the SourceBuffer; more means playback is stuck: start over. */
const MAX_QUEUE = 600;

export function mimeOf(codec: string): string {
  return `video/mp4; codecs="${codec}"`;
}

export function canPlay(codec: string): boolean {
  return typeof MediaSource !== 'undefined' && MediaSource.isTypeSupported(mimeOf(codec));
}

export class LivePlayer {
  private ws: WebSocket | null = null;
  private ms: MediaSource | null = null;
  private sb: SourceBuffer | null = null;
  private queue: ArrayBuffer[] = [];
  private mime = '';
  /** After an `init` message the next binary one is the init segment. */
  private awaitingInit = false;
  private playing = false;
  /** Appends since the media was reset (the first is the init segment). */
  private appended = 0;
  private running = false;
  private attempt = 0;
  private retryTimer = 0;
  private edgeTimer = 0;
  private droppedTotal = 0;
  /** The latest key frames' clocks (oldest first), for the live delay. */
  readonly clocks: Clock[] = [];

  constructor(
    private readonly video: HTMLVideoElement,
    private readonly url: string,
    private readonly ev: PlayerEvents,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.video.addEventListener('error', this.onVideoError);
    this.edgeTimer = window.setInterval(() => this.keepLive(), 250);
    this.connect();
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.retryTimer);
    clearInterval(this.edgeTimer);
    this.video.removeEventListener('error', this.onVideoError);
    this.closeSocket();
    this.teardownMedia();
  }

  private onVideoError = () => {
    // A decode error (a broken fragment): start again at the next key frame.
    if (this.running && this.ms) this.restart();
  };

  private connect(): void {
    if (!this.running) return;
    this.ev.status({ kind: 'connecting' });
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws === ws) this.ev.status({ kind: 'waiting' });
    };
    ws.onmessage = (e) => {
      if (this.ws === ws) this.onMessage(e.data);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.teardownMedia();
      this.scheduleReconnect();
    };
  }

  private closeSocket(): void {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch {
        // Already closing.
      }
    }
  }

  private scheduleReconnect(): void {
    if (!this.running) return;
    clearTimeout(this.retryTimer);
    this.attempt++;
    const delay = backoff(this.attempt);
    this.ev.status({ kind: 'reconnecting', inMs: delay });
    this.retryTimer = window.setTimeout(() => this.connect(), delay);
  }

  /** Start over: a fresh socket (the server begins at a key frame) and fresh media. */
  private restart(): void {
    this.closeSocket();
    this.teardownMedia();
    this.scheduleReconnect();
  }

  private onMessage(data: unknown): void {
    if (typeof data === 'string') {
      let m: { type?: string; [k: string]: unknown };
      try {
        m = JSON.parse(data);
      } catch {
        return;
      }
      if (m.type === 'init') {
        const info = { codec: String(m.codec), width: Number(m.width), height: Number(m.height) };
        if (!canPlay(info.codec)) {
          this.ev.status({ kind: 'unsupported', codec: info.codec });
          this.stop();
          return;
        }
        this.ev.init(info);
        this.mime = mimeOf(info.codec);
        this.resetMedia();
        this.awaitingInit = true;
      } else if (m.type === 'clock') {
        this.clocks.push({ t: Number(m.t), at: Number(m.at) });
        if (this.clocks.length > 16) this.clocks.shift();
      } else if (m.type === 'dropped') {
        this.droppedTotal += Number(m.frames) || 0;
        this.ev.dropped(this.droppedTotal);
      } else if (m.type === 'detections' && Array.isArray(m.boxes)) {
        this.ev.detections(m as unknown as Detections);
      }
      return;
    }
    if (!(data instanceof ArrayBuffer) || !this.ms) return;
    if (this.awaitingInit) {
      this.awaitingInit = false;
      this.queue = [data];
    } else {
      this.queue.push(data);
    }
    if (this.queue.length > MAX_QUEUE) {
      this.restart();
      return;
    }
    this.pump();
  }

  private resetMedia(): void {
    this.teardownMedia();
    // A new stream: a new media timeline.
    this.clocks.length = 0;
    const ms = new MediaSource();
    this.ms = ms;
    const objectUrl = URL.createObjectURL(ms);
    ms.addEventListener(
      'sourceopen',
      () => {
        URL.revokeObjectURL(objectUrl);
        if (this.ms !== ms) return;
        try {
          // A live stream has no end: an init segment's own duration (mehd) would otherwise
          // become the media's, and playback would stop there until more was appended.
          ms.duration = Infinity;
          const sb = ms.addSourceBuffer(this.mime);
          sb.mode = 'segments';
          sb.addEventListener('updateend', () => {
            if (this.sb === sb) this.pump();
          });
          this.sb = sb;
        } catch {
          this.restart();
          return;
        }
        this.pump();
      },
      { once: true },
    );
    this.video.src = objectUrl;
  }

  private teardownMedia(): void {
    this.sb = null;
    this.queue = [];
    this.playing = false;
    this.appended = 0;
    if (this.ms) {
      this.ms = null;
      this.video.pause();
      this.video.removeAttribute('src');
      this.video.load();
    }
  }

  /** Appends the next queued fragment, or trims, when the SourceBuffer is free. */
  private pump(): void {
    const sb = this.sb;
    const ms = this.ms;
    if (!sb || !ms || ms.readyState !== 'open' || sb.updating) return;
    if (this.trim(sb)) return;
    const next = this.queue.shift();
    if (!next) return;
    try {
      sb.appendBuffer(next);
    } catch (e) {
      if ((e as DOMException).name === 'QuotaExceededError') {
        // Full: free what lies behind playback and try again.
        this.queue.unshift(next);
        const now = this.video.currentTime;
        if (sb.buffered.length && now - sb.buffered.start(0) > 1) sb.remove(0, now - 1);
        else this.restart();
        return;
      }
      this.restart();
      return;
    }
    this.appended++;
    if (!this.playing && this.appended >= 2) {
      // The init segment and a fragment are in: the stream is up.
      this.playing = true;
      this.attempt = 0;
      this.ev.status({ kind: 'playing' });
    }
  }

  /** Removes media older than KEEP_BEHIND_S before the current time; true when it started. */
  private trim(sb: SourceBuffer): boolean {
    const b = sb.buffered;
    if (!b.length) return false;
    const now = this.video.currentTime;
    const start = b.start(0);
    if (now - start > KEEP_BEHIND_S + TRIM_SLACK_S) {
      sb.remove(start, now - KEEP_BEHIND_S);
      return true;
    }
    return false;
  }

  /** Stays at the live edge: catch up by playing faster, or jump when far behind. */
  private keepLive(): void {
    const v = this.video;
    if (!this.sb || !this.ms) return;
    const b = v.buffered;
    if (!b.length) return;
    const end = b.end(b.length - 1);
    const now = v.currentTime;
    // Find the range we are in; outside every range (the start, or a gap after skipped
    // frames) go to the next range's start.
    let inRange = -1;
    for (let i = 0; i < b.length; i++) if (now >= b.start(i) && now <= b.end(i)) inRange = i;
    if (inRange < 0 || (inRange < b.length - 1 && b.end(inRange) - now < 0.15)) {
      for (let i = 0; i < b.length; i++) {
        if (b.start(i) > now || i === b.length - 1) {
          v.currentTime = Math.max(b.start(i), Math.min(end - 0.1, b.start(i) + 0.01));
          break;
        }
      }
    } else {
      // Hold the picture about TARGET_LAG_S behind the newest frame received: faster in
      // proportion to the lag (up to 1.5×, unnoticeable on a surveillance picture), a jump
      // when far behind (after a stall or a hidden tab).
      const lag = end - now;
      if (lag > JUMP_LAG_S) {
        v.currentTime = end - TARGET_LAG_S / 2;
        v.playbackRate = 1;
      } else {
        const rate = lag > TARGET_LAG_S + 0.05 ? Math.min(1.5, 1 + (lag - TARGET_LAG_S)) : 1;
        if (Math.abs(v.playbackRate - rate) > 0.02) v.playbackRate = rate;
      }
    }
    if (v.paused) void v.play().catch(() => undefined);
    // Trimming is also due while no fragment arrives.
    this.pump();
  }
}
