// One tile of the wall: live video over MSE (or snapshots where the browser cannot play the
// codec), detection boxes, the camera's health on hover, and its state when offline. It
// closes its socket while off-screen or while the page is hidden.

import { useEffect, useRef, useState } from 'preact/hooks';
import { cameraById, loaded, siteById } from '../lib/data';
import { t, label } from '../lib/i18n';
import { bitrate, dateTime, fps } from '../lib/format';
import { may } from '../lib/permissions';
import { pageVisible } from '../lib/visibility';
import { LivePlayer, liveDelay, type PlayerStatus } from './player';
import { DetectionQueue, draw } from './overlay';
import { assign, select, swap, toggleFull } from './state';
import type { Camera } from '../lib/types';

interface Props {
  index: number;
  cameraId: string | null;
  selected: boolean;
  full: boolean;
}

function liveUrl(id: string): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/api/v1/cameras/${encodeURIComponent(id)}/live`;
}

function offlineSince(c: Camera): string | number | null {
  return c.health.since ?? c.health.last_keyframe_at ?? null;
}

export function Tile({ index, cameraId, selected, full }: Props) {
  const root = useRef<HTMLDivElement>(null);
  const video = useRef<HTMLVideoElement>(null);
  const canvas = useRef<HTMLCanvasElement>(null);
  const dets = useRef(new DetectionQueue());
  const [inView, setInView] = useState(true);
  const [status, setStatus] = useState<PlayerStatus>({ kind: 'connecting' });
  const [mode, setMode] = useState<'live' | 'snapshot'>('live');
  const [codec, setCodec] = useState('');
  const [dropped, setDropped] = useState(0);
  const [delay, setDelay] = useState<number | null>(null);
  const [snap, setSnap] = useState<{ url: string | null; failed: boolean }>({ url: null, failed: false });
  const [dragOver, setDragOver] = useState(false);

  const cam = cameraId ? cameraById.value.get(cameraId) : undefined;
  const site = cam ? siteById.value.get(cam.site) : undefined;
  const active = !!cam && inView && pageVisible.value && may.live();

  useEffect(() => {
    const el = root.current!;
    const io = new IntersectionObserver((entries) => {
      for (const e of entries) setInView(e.isIntersecting);
    });
    io.observe(el);
    return () => io.disconnect();
  }, []);

  useEffect(() => {
    setMode('live');
    setCodec('');
    setDropped(0);
    setSnap({ url: null, failed: false });
    dets.current.clear();
  }, [cameraId]);

  useEffect(() => {
    if (!active || mode !== 'live' || !cameraId) return;
    const v = video.current!;
    const c = canvas.current!;
    const player = new LivePlayer(v, liveUrl(cameraId), {
      status: (s) => {
        if (s.kind === 'unsupported') {
          setCodec(s.codec);
          setMode('snapshot');
        }
        setStatus(s);
      },
      init: (i) => {
        setCodec(i.codec);
        dets.current.clear();
      },
      dropped: setDropped,
      detections: (d) => dets.current.push(d),
    });
    player.start();
    // The key frames' reception times, for the live delay (and the latency benchmark, which
    // reads them in requestVideoFrameCallback: hub/ui/bench/latency.mjs).
    Object.defineProperty(v, 'hubClocks', { value: player.clocks, configurable: true });
    const delayTimer = window.setInterval(() => setDelay(liveDelay(v, player.clocks)), 1000);
    let raf = 0;
    let last: unknown = undefined;
    let size = '';
    const loop = () => {
      const d = dets.current.at(v.currentTime);
      const s = `${v.clientWidth}x${v.clientHeight}`;
      if (d !== last || s !== size) {
        draw(c, v, d);
        last = d;
        size = s;
      }
      raf = requestAnimationFrame(loop);
    };
    raf = requestAnimationFrame(loop);
    return () => {
      player.stop();
      clearInterval(delayTimer);
      setDelay(null);
      cancelAnimationFrame(raf);
      draw(c, v, null);
      dets.current.clear();
      setStatus({ kind: 'connecting' });
    };
  }, [active, mode, cameraId]);

  useEffect(() => {
    if (!active || mode !== 'snapshot' || !cameraId) return;
    let stopped = false;
    const tick = () => {
      const img = new Image();
      img.onload = () => !stopped && setSnap({ url: img.src, failed: false });
      img.onerror = () => !stopped && setSnap((s) => ({ ...s, failed: true }));
      img.src = `/api/v1/cameras/${encodeURIComponent(cameraId)}/snapshot?ts=${Date.now()}`;
    };
    tick();
    const timer = window.setInterval(tick, 2000);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [active, mode, cameraId]);

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragOver(false);
    const camera = e.dataTransfer?.getData('text/x-camera');
    const from = e.dataTransfer?.getData('text/x-tile');
    if (camera) assign(index, camera);
    else if (from !== undefined && from !== '' && Number(from) !== index) swap(Number(from), index);
  };

  const state = cam?.health.state;
  // `idle`: an on-demand camera nobody watches (this tile's socket starts its pull).
  const offline =
    !!cam && (state === 'offline' || state === 'stopped' || (state === 'connecting' && !!cam.health.last_error));
  const statusText = !cam
    ? ''
    : !active
      ? t('wall.paused')
      : mode === 'snapshot'
        ? ''
        : status.kind === 'reconnecting'
          ? t('wall.reconnecting', { s: Math.ceil(status.inMs / 1000) })
          : status.kind === 'playing'
            ? t('wall.live')
            : status.kind === 'waiting'
              ? t('wall.waiting')
              : t('wall.connecting');

  const classes = ['tile', selected && 'selected', full && 'full', dragOver && 'drag-over', offline && 'offline']
    .filter(Boolean)
    .join(' ');

  return (
    <div
      ref={root}
      class={classes}
      data-tile={index}
      data-camera={cameraId ?? undefined}
      data-status={!cam ? 'empty' : !active ? 'paused' : mode === 'snapshot' ? 'snapshot' : status.kind}
      onClick={() => select(index)}
      onDblClick={() => toggleFull(index)}
      onDragOver={(e) => {
        e.preventDefault();
        setDragOver(true);
      }}
      onDragLeave={() => setDragOver(false)}
      onDrop={onDrop}
    >
      <video
        ref={video}
        class="tile-video"
        muted
        playsInline
        autoplay
        hidden={mode !== 'live' || !cam}
      />
      <canvas ref={canvas} class="tile-overlay" hidden={mode !== 'live' || !cam} />
      {mode === 'snapshot' && cam && (
        <>
          {snap.url ? <img class="tile-snapshot" src={snap.url} alt="" /> : null}
          <div class="tile-note" data-note="snapshot">
            {t('wall.snapshot_mode', { codec })}
            {snap.failed && !snap.url ? ` — ${t('wall.snapshot_unavailable')}` : ''}
          </div>
        </>
      )}
      {!cameraId && <div class="tile-empty">{t('wall.empty')}</div>}
      {cameraId && !cam && loaded.value.cameras && (
        <div class="tile-empty">{t('wall.unknown_camera', { id: cameraId })}</div>
      )}
      {cam && offline && (
        <div class="tile-offline" data-offline={state}>
          <div class="tile-offline-state">
            {state === 'offline' && offlineSince(cam)
              ? t('wall.offline_since', { t: dateTime(offlineSince(cam)) })
              : label('state', state)}
          </div>
          {cam.health.last_error && <div class="tile-offline-error">{cam.health.last_error}</div>}
        </div>
      )}
      {cameraId && (
        <div
          class="tile-bar"
          draggable
          onDragStart={(e) => e.dataTransfer?.setData('text/x-tile', String(index))}
        >
          <span class={`dot ${state ?? 'unknown'}`} />
          <span class="tile-name" title={cameraId}>
            {cam?.name || cameraId}
            {site ? <span class="muted"> · {site.name}</span> : null}
          </span>
          <span class="tile-status">{statusText}</span>
          {dropped > 0 && <span class="tile-dropped" title={t('health.dropped')}>−{dropped}</span>}
          <button
            type="button"
            class="icon"
            data-role="enlarge"
            title={full ? t('wall.restore') : t('wall.enlarge')}
            onClick={(e) => {
              e.stopPropagation();
              toggleFull(index);
            }}
          >
            {full ? '⤡' : '⤢'}
          </button>
          <button
            type="button"
            class="icon"
            data-role="remove"
            title={t('wall.remove')}
            onClick={(e) => {
              e.stopPropagation();
              assign(index, null);
            }}
          >
            ×
          </button>
        </div>
      )}
      {cam && (
        <dl class="tile-health">
          <dt>{t('health.state')}</dt>
          <dd>{label('state', state)}</dd>
          <dt>{t('health.fps')}</dt>
          <dd>{fps(cam.health.input_fps ?? cam.health.fps)}</dd>
          <dt>{t('health.bitrate')}</dt>
          <dd>{bitrate(cam.health.bitrate)}</dd>
          <dt>{t('health.viewers')}</dt>
          <dd>{cam.viewers ?? '—'}</dd>
          <dt>{t('health.codec')}</dt>
          <dd>{codec || '—'}</dd>
          <dt>{t('health.dropped')}</dt>
          <dd>{dropped}</dd>
          <dt>{t('health.delay')}</dt>
          <dd data-delay-ms={delay ?? undefined}>{delay === null ? '—' : `${Math.round(delay)} ms`}</dd>
          <dt>{t('health.last_keyframe')}</dt>
          <dd>{dateTime(cam.health.last_keyframe_at)}</dd>
          {cam.pull && (
            <>
              <dt>{t('health.pull')}</dt>
              <dd data-pull={cam.pull.mode}>
                {label('pull', cam.pull.mode)} · {cam.pull.active ? t('pull.active') : t('pull.idle')}
                {cam.pull.active && cam.pull.since ? ` (${dateTime(cam.pull.since)})` : ''}
              </dd>
            </>
          )}
          <dt>{t('health.last_error')}</dt>
          <dd class="err">{cam.health.last_error || t('none')}</dd>
        </dl>
      )}
    </div>
  );
}
