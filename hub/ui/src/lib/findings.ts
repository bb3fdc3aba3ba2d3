// The findings the duty room holds: the list fetched with the filters the API takes, kept up
// to date by the event stream (new ones on top, changed ones in place), and the filters the
// UI applies itself (verdict, region, industry, kind) to both.

import { signal, computed } from '@preact/signals';
import { get, qs, refreshSession, session } from './api';
import { raise } from './alert';
import { siteById } from './data';
import type { Finding, Page } from './types';

export interface Filter {
  severity: string;
  state: string;
  verdict: string;
  site: string;
  region: string;
  industry: string;
  /** `rule:<id>` or `kind:<kind>`. */
  kind: string;
  /** `camera:<id>` or `device:<id>`. */
  source: string;
}

const FILTER_KEY = 'hub.findings.filter';
export const EMPTY_FILTER: Filter = {
  severity: '',
  state: '',
  verdict: '',
  site: '',
  region: '',
  industry: '',
  kind: '',
  source: '',
};

function savedFilter(): Filter {
  try {
    return { ...EMPTY_FILTER, ...JSON.parse(localStorage.getItem(FILTER_KEY) || '{}') };
  } catch {
    return { ...EMPTY_FILTER };
  }
}

export const filter = signal<Filter>(savedFilter());
export const byId = signal<Map<number, Finding>>(new Map());
export const next = signal<string | null>(null);
export const listState = signal<'idle' | 'loading' | 'error'>('idle');
export const listError = signal<string | null>(null);
/** `connecting`: the first connection; `reconnecting`: after the stream broke. */
export const streamState = signal<'off' | 'connecting' | 'live' | 'reconnecting'>('off');

export function setFilter(f: Filter): void {
  filter.value = f;
  try {
    localStorage.setItem(FILTER_KEY, JSON.stringify(f));
  } catch {
    // Kept for this page only.
  }
  void reload();
}

/** Whether `f` passes every filter (the API's own and the UI's). */
export function matches(f: Finding, q: Filter = filter.value): boolean {
  const site = siteById.value.get(f.site_id);
  if (q.severity && f.severity !== q.severity) return false;
  if (q.state && f.state !== q.state) return false;
  if (q.verdict && (f.verdict ?? 'unverified') !== q.verdict) return false;
  if (q.site && f.site_id !== q.site) return false;
  if (q.region) {
    const region = f.region || site?.region || '';
    if (!region.startsWith(q.region)) return false;
  }
  if (q.industry && site?.industry !== q.industry) return false;
  if (q.kind.startsWith('rule:') && f.rule !== q.kind.slice(5)) return false;
  if (q.kind.startsWith('kind:') && f.kind !== q.kind.slice(5)) return false;
  if (q.source.startsWith('camera:') && f.camera_id !== q.source.slice(7)) return false;
  if (q.source.startsWith('device:') && f.device_id !== q.source.slice(7)) return false;
  return true;
}

/** The shown findings, newest first. */
export const visible = computed(() =>
  [...byId.value.values()].filter((f) => matches(f)).sort((a, b) => b.id - a.id),
);

const PAGE = 200;

function query(cursor?: string | null): string {
  const q = filter.value;
  return qs({
    severity: q.severity,
    state: q.state,
    verdict: q.verdict,
    site: q.site,
    rule: q.kind.startsWith('rule:') ? q.kind.slice(5) : '',
    camera: q.source.startsWith('camera:') ? q.source.slice(7) : '',
    device: q.source.startsWith('device:') ? q.source.slice(7) : '',
    limit: PAGE,
    cursor: cursor ?? '',
  });
}

let generation = 0;

export async function reload(): Promise<void> {
  const mine = ++generation;
  listState.value = 'loading';
  try {
    const page = await get<Page<Finding>>(`/api/v1/findings${query()}`);
    if (mine !== generation) return;
    byId.value = new Map(page.items.map((f) => [f.id, f]));
    next.value = page.next ?? null;
    listState.value = 'idle';
    listError.value = null;
  } catch (e) {
    if (mine !== generation) return;
    listState.value = 'error';
    listError.value = (e as Error).message;
  }
}

export async function loadMore(): Promise<void> {
  const cursor = next.value;
  if (!cursor) return;
  const mine = generation;
  const page = await get<Page<Finding>>(`/api/v1/findings${query(cursor)}`);
  if (mine !== generation) return;
  const m = new Map(byId.value);
  for (const f of page.items) if (!m.has(f.id)) m.set(f.id, f);
  byId.value = m;
  next.value = page.next ?? null;
}

export function upsert(f: Finding): void {
  const m = new Map(byId.value);
  m.set(f.id, { ...m.get(f.id), ...f });
  byId.value = m;
}

/** Whether an event's data is a whole finding as `GET /api/v1/findings/{id}` gives it. */
function isWhole(v: Record<string, unknown>): boolean {
  return (
    typeof v.state === 'string' &&
    typeof v.first_seen === 'string' &&
    (v.camera_id == null || Array.isArray(v.evidence))
  );
}

const fetching = new Map<number, Promise<void>>();

async function fetchOne(id: number): Promise<Finding | null> {
  try {
    return await get<Finding>(`/api/v1/findings/${id}`);
  } catch {
    return null;
  }
}

function onEvent(raw: Record<string, unknown>): void {
  const id = Number(raw.id);
  if (!Number.isFinite(id)) return;
  const known = byId.value.has(id);
  // The stream sends the whole finding without saying what changed: one not listed yet, seen
  // once, active and unverified is taken as new (older hubs said `change: "opened"`).
  // A change replayed on reconnection is new to this page when it was not listed: a critical
  // finding opened while the stream was down still raises the alarm.
  const opened =
    raw.change === 'opened' ||
    (raw.change === 'replayed' && !known && raw.state === 'active' && (raw.verdict ?? 'unverified') === 'unverified') ||
    (raw.change === undefined &&
      !known &&
      Number(raw.count) === 1 &&
      raw.state === 'active' &&
      (raw.verdict ?? 'unverified') === 'unverified');
  const take = (f: Finding) => {
    // A finding outside the filters is kept only if already listed (it changed in place).
    if (known || matches(f)) upsert(f);
    if (opened && f.severity === 'critical' && f.state === 'active') raise(f);
  };
  if (isWhole(raw)) {
    take(raw as unknown as Finding);
    return;
  }
  // The stream carries a summary of the change: fetch the whole finding (once per id at a
  // time; a later event for the same id fetches again after it).
  const prev = fetching.get(id) ?? Promise.resolve();
  const p = prev.then(async () => {
    const f = await fetchOne(id);
    if (f) take(f);
  });
  fetching.set(id, p);
  void p.finally(() => {
    if (fetching.get(id) === p) fetching.delete(id);
  });
}

/** Opens the event stream; reconnects forever. Returns the stop. */
export function startStream(): () => void {
  let es: EventSource | null = null;
  let stopped = false;
  let attempt = 0;
  let timer = 0;
  const open = () => {
    if (stopped) return;
    streamState.value = attempt > 0 ? 'reconnecting' : 'connecting';
    es = new EventSource('/api/v1/findings/stream');
    es.onopen = () => {
      // After a gap the list may miss changes: fetch it again on every reconnect but the first.
      if (attempt > 0) void reload();
      attempt = 0;
      streamState.value = 'live';
    };
    es.addEventListener('finding', (ev) => {
      try {
        onEvent(JSON.parse((ev as MessageEvent).data));
      } catch {
        // A malformed event: skip it.
      }
    });
    es.addEventListener('lagged', () => void reload());
    es.onerror = () => {
      streamState.value = 'reconnecting';
      if (es && es.readyState === EventSource.CLOSED) {
        // The browser gave up (an error status): try again ourselves, after checking that
        // the session still holds.
        es = null;
        attempt++;
        const delay = Math.min(30_000, 1000 * 2 ** Math.min(attempt - 1, 5));
        timer = window.setTimeout(async () => {
          await refreshSession().catch(() => false);
          if (session.value) open();
        }, delay * (0.75 + Math.random() * 0.5));
      } else {
        attempt = Math.max(attempt, 1);
      }
    };
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(timer);
    es?.close();
    streamState.value = 'off';
    byId.value = new Map();
  };
}

export function findingSource(f: Finding): string {
  return f.camera_id ? `camera:${f.camera_id}` : f.device_id ? `device:${f.device_id}` : '';
}

export { fetchOne };
