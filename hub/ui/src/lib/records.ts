// Supervision records and their delivery to departments (docs/records.md): the shapes of the
// API's answers, the records list with its filters, one record with its timeline, the
// lifecycle's actions and who may take them, attachments, notices, and subscriptions with
// their deliveries and replays.

import { computed, signal } from '@preact/signals';
import { del, get, patch, post, postRaw, qs, session } from './api';
import { may } from './permissions';
import type { Page, Severity } from './types';

export type RecordState =
  | 'new'
  | 'distributed'
  | 'claimed'
  | 'assigned'
  | 'resulted'
  | 'fed_back'
  | 'closed'
  | 'returned';
export const RECORD_STATES: RecordState[] = [
  'new',
  'distributed',
  'claimed',
  'assigned',
  'resulted',
  'fed_back',
  'closed',
  'returned',
];

/** `met` / `late`: closed in time / after `close_due_at`. */
export type DeadlineState = 'ok' | 'claim_overdue' | 'close_overdue' | 'met' | 'late';
export const DEADLINE_STATES: DeadlineState[] = ['ok', 'claim_overdue', 'close_overdue', 'met', 'late'];
/** What the list's `deadline` filter takes: the overdue ones. */
export const DEADLINE_FILTERS: DeadlineState[] = ['claim_overdue', 'close_overdue'];
export const isOverdue = (d: string | null | undefined) => d === 'claim_overdue' || d === 'close_overdue';

export type RecordAction = 'distribute' | 'claim' | 'assign' | 'result' | 'feedback' | 'close' | 'reopen' | 'return';

/** The lifecycle table of docs/records.md: the states each action is allowed from. */
export const ACTIONS_FROM: { [A in RecordAction]: RecordState[] } = {
  distribute: ['new', 'returned'],
  claim: ['distributed'],
  assign: ['claimed', 'assigned'],
  result: ['assigned'],
  feedback: ['resulted'],
  close: ['fed_back'],
  reopen: ['closed'],
  return: ['distributed', 'claimed', 'assigned'],
};
/** In the order a record goes through them. */
export const ACTIONS = Object.keys(ACTIONS_FROM) as RecordAction[];

export const FEEDBACK_KINDS = ['inspection', 'penalty', 'coercion'] as const;
export type FeedbackKind = (typeof FEEDBACK_KINDS)[number];

/** Content types the hub takes as attachments. */
export const ATTACHMENT_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'application/pdf'];

export const EVENT_TYPES = [
  'record.created',
  'record.distributed',
  'record.claimed',
  'record.assigned',
  'record.resulted',
  'record.fed_back',
  'record.closed',
  'record.reopened',
  'record.returned',
  'record.escalated',
  'record.finding_attached',
] as const;

export interface Entity {
  name: string;
  uscc: string;
  address?: string | null;
  risk_grade?: string | null;
}

export interface Escalation {
  level: 1 | 2;
  at: string;
  /** The supervising department's id. */
  to: string;
  reason: string;
}

export interface RecordEvidence {
  images: { url: string; captured_at: string }[];
  /** 30 minutes either side of the finding. */
  readings: { device_id: string; from: string; to: string; url: string } | null;
  /** The window a recorder would hold (no recording is kept yet). */
  clip: { camera_id?: string; from?: string; to?: string; url?: string } | null;
}

export interface Attachment {
  id: number | string;
  name: string;
  content_type: string;
  size: number;
  url: string;
  sha256?: string;
  uploaded_by?: string;
  at?: string;
}

/** One step of a record: who (`actor`), when (`at`), `from` → `to`. */
export interface Transition {
  id: number;
  action: string;
  from: RecordState | null;
  to: RecordState | null;
  actor: string;
  at: string;
  note: string | null;
  data: unknown;
  attachments: Attachment[];
}

/** A supervision record (`Record` would shadow TypeScript's own). */
export interface SupervisionRecord {
  id: number;
  number: string;
  state: RecordState;
  item_code: string;
  item_name: string;
  severity: Severity;
  industry: string;
  region: string;
  site_id: string;
  site_name: string;
  entity: Entity | null;
  summary: string;
  finding_ids: number[];
  occurrences: number;
  first_seen: string;
  last_seen: string;
  evidence: RecordEvidence | null;
  /** The departments it was routed (or distributed) to. */
  candidates: string[];
  /** The department holding it (the claiming one), where there is one. */
  department_id: string | null;
  assignee: string | null;
  result: unknown;
  feedback: unknown;
  claim_due_at: string | null;
  close_due_at: string | null;
  deadline: DeadlineState;
  escalation: Escalation | null;
  created_at: string;
  created_by: string;
  updated_at: string;
  closed_at?: string | null;
  cursor: string;
  /** Only from `GET /api/v1/records/{id}`. */
  timeline?: Transition[];
}

export interface Notice {
  id: number;
  at: string;
  kind: string;
  department_id: string;
  record_id: number | null;
  subscription_id: number | null;
  message: string;
}

export interface SubscriptionFilters {
  regions: string[];
  industries: string[];
  item_codes: string[];
  severities: string[];
  event_types: string[];
}

export interface SubscriptionKey {
  id: number | string;
  created_at: string;
  /** When a rotated-out secret stops signing; null: the current one. */
  expires_at: string | null;
}

export type Transport = 'webhook' | 'mqtt';

export interface Subscription {
  id: number;
  department_id: string;
  name: string;
  url: string;
  transport: Transport;
  filters: SubscriptionFilters;
  enabled: boolean;
  disabled_reason: string | null;
  disabled_at: string | null;
  failing_since: string | null;
  last_success_at: string | null;
  pending: number;
  delivered: number;
  failed: number;
  created_at: string;
  keys: SubscriptionKey[];
  /** Only in the answers of create and rotate: shown once. */
  secret?: string;
  /** MQTT subscriptions: the login and topic the department's subscriber uses. */
  mqtt?: { username: string; topic: string } | null;
}

export interface NewSubscription {
  name: string;
  /** Webhooks only. */
  url?: string;
  transport: Transport;
  filters: SubscriptionFilters;
  /** Admins name the department. */
  department_id?: string;
}

export type DeliveryState = 'pending' | 'delivered' | 'failed' | 'held';
export const DELIVERY_STATES: DeliveryState[] = ['pending', 'delivered', 'failed', 'held'];

export interface DeliveryAttempt {
  attempt: number;
  at: string;
  status: number | null;
  latency_ms: number;
  error: string | null;
}

export interface Delivery {
  id: number;
  event_id: string;
  event_type: string;
  record_id: number;
  state: DeliveryState;
  attempts: number;
  next_at: string | null;
  last_status: number | null;
  last_error: string | null;
  created_at: string;
  delivered_at: string | null;
  log: DeliveryAttempt[];
}

export interface CatalogueItem {
  code: string;
  name: string;
  departments?: string[] | string;
  industry?: string;
  severity?: string;
}

// ---- Who may act -----------------------------------------------------------------------

/**
 * Whether the session may take `action` on `r` now: the state allows it (the lifecycle
 * table), the session's permissions admit it, and the table's "who" names the session: a
 * candidate department claims (and returns what nobody claimed yet), the claiming department
 * works the record, the duty room (operators, admins) distributes, closes and reopens. The
 * API decides in the end (403 names who holds the record); this keeps the UI from offering
 * the rest.
 */
export function mayAct(r: SupervisionRecord, action: RecordAction): boolean {
  if (!ACTIONS_FROM[action].includes(r.state)) return false;
  if (!may.recordAction(action)) return false;
  const s = session.value;
  if (!s) return false;
  const mine = s.department?.id ?? null;
  const duty = s.roles.includes('duty_operator') || s.roles.includes('admin');
  const candidate = mine !== null && (r.candidates ?? []).includes(mine);
  const claimant = mine !== null && r.department_id === mine;
  switch (action) {
    case 'distribute':
      return duty;
    case 'claim':
      return candidate;
    case 'assign':
    case 'result':
    case 'feedback':
      return claimant;
    case 'close':
    case 'reopen':
      return claimant || duty;
    case 'return':
      return claimant || (!r.department_id && candidate);
  }
}

// ---- The list --------------------------------------------------------------------------

export interface RecordFilter {
  state: string;
  deadline: string;
  item_code: string;
  site: string;
  department: string;
}

const FILTER_KEY = 'hub.records.filter';
export const EMPTY_RECORD_FILTER: RecordFilter = { state: '', deadline: '', item_code: '', site: '', department: '' };

function savedFilter(): RecordFilter {
  try {
    return { ...EMPTY_RECORD_FILTER, ...JSON.parse(localStorage.getItem(FILTER_KEY) || '{}') };
  } catch {
    return { ...EMPTY_RECORD_FILTER };
  }
}

export const recordFilter = signal<RecordFilter>(savedFilter());
export const records = signal<SupervisionRecord[]>([]);
export const recordsNext = signal<string | null>(null);
/** `loading` until the first answer: a list shown empty is one the hub sent empty. */
export const recordsState = signal<'idle' | 'loading' | 'error'>('loading');
export const recordsError = signal<string | null>(null);

/** Item codes (→ names) and departments seen so far: the filters' choices only grow. */
export const knownItems = signal<Map<string, string>>(new Map());
export const knownDepartments = signal<Set<string>>(new Set());

function remember(items: SupervisionRecord[]): void {
  const m = new Map(knownItems.value);
  const d = new Set(knownDepartments.value);
  let changed = false;
  for (const r of items) {
    if (r.item_code && !m.get(r.item_code)) {
      m.set(r.item_code, r.item_name || '');
      changed = true;
    }
    for (const id of [r.department_id, ...(r.candidates ?? [])]) {
      if (id && !d.has(id)) {
        d.add(id);
        changed = true;
      }
    }
  }
  if (changed) {
    knownItems.value = m;
    knownDepartments.value = d;
  }
}

/** The catalogue's items for the item filter, where the session may read it. */
export async function loadCatalogue(): Promise<void> {
  if (!may.catalogue()) return;
  try {
    const body = await get<CatalogueItem[] | Page<CatalogueItem>>('/api/v1/catalogue');
    const items = Array.isArray(body) ? body : (body.items ?? []);
    const m = new Map(knownItems.value);
    for (const it of items) if (it.code) m.set(it.code, it.name || m.get(it.code) || '');
    knownItems.value = m;
  } catch {
    // The filter offers the items seen in the list instead.
  }
}

export function setRecordFilter(f: RecordFilter): void {
  recordFilter.value = f;
  try {
    localStorage.setItem(FILTER_KEY, JSON.stringify(f));
  } catch {
    // Kept for this page only.
  }
  void reloadRecords();
}

const PAGE = 100;

/**
 * The newest-first list: the filters and `limit`, and `cursor` (the answer's `next`) for the
 * page after, as the findings list pages. `after` is not sent: it asks for the feed of
 * changes in commit order instead.
 */
function query(cursor?: string | null): string {
  const f = recordFilter.value;
  return qs({ ...f, limit: PAGE, cursor: cursor ?? '' });
}

let generation = 0;

/**
 * Fetches the first page again. `keep` (the poll): the pages loaded below the first stay,
 * so that a refresh does not cut the list short; otherwise (the filters changed) the list is
 * the first page alone.
 */
export async function reloadRecords(opts: { keep?: boolean } = {}): Promise<void> {
  const mine = ++generation;
  recordsState.value = 'loading';
  try {
    const page = await get<Page<SupervisionRecord>>(`/api/v1/records${query()}`);
    if (mine !== generation) return;
    const first = new Set(page.items.map((r) => r.id));
    const oldest = page.items.length ? Math.min(...page.items.map((r) => r.id)) : Infinity;
    const rest =
      opts.keep && page.next ? records.value.filter((r) => !first.has(r.id) && r.id < oldest) : [];
    records.value = [...page.items, ...rest];
    if (!rest.length) recordsNext.value = page.next ?? null;
    remember(page.items);
    recordsState.value = 'idle';
    recordsError.value = null;
  } catch (e) {
    if (mine !== generation) return;
    recordsState.value = 'error';
    recordsError.value = (e as Error).message;
  }
}

export async function moreRecords(): Promise<void> {
  const cursor = recordsNext.value;
  if (!cursor) return;
  const mine = generation;
  const page = await get<Page<SupervisionRecord>>(`/api/v1/records${query(cursor)}`);
  if (mine !== generation) return;
  const have = new Set(records.value.map((r) => r.id));
  records.value = [...records.value, ...page.items.filter((r) => !have.has(r.id))];
  recordsNext.value = page.next ?? null;
  remember(page.items);
}

/** Puts a record fetched or changed into the list in place (the list keeps its order). */
export function upsertRecord(r: SupervisionRecord): void {
  const { timeline: _timeline, ...listed } = r;
  if (records.value.some((x) => x.id === r.id)) {
    records.value = records.value.map((x) => (x.id === r.id ? { ...x, ...listed } : x));
  }
  remember([r]);
}

export const fetchRecord = (id: number) => get<SupervisionRecord>(`/api/v1/records/${id}`);

// ---- Actions ---------------------------------------------------------------------------

export interface Inspector {
  name: string;
  certificate: string;
}

/** The bodies of the lifecycle table. */
export type ActionBody =
  | { action: 'distribute'; departments: string[]; note?: string }
  | { action: 'claim' | 'close'; note?: string }
  | { action: 'assign'; assignee: string; note?: string }
  | { action: 'result'; result: string; attachments?: (number | string)[]; note?: string }
  | {
      action: 'feedback';
      kind: FeedbackKind;
      outcome: string;
      inspected_at: string;
      inspectors: Inspector[];
      reported_at: string;
      reporter: string;
      attachments?: (number | string)[];
      note?: string;
    }
  | { action: 'reopen' | 'return'; note: string };

/**
 * Takes an action; the answer is the record as it now is (fetched again where the answer is
 * not a record). A refused one throws the API's ApiError (409 names the state and the actions
 * allowed now; 403 who holds the record).
 */
export async function act(id: number, body: ActionBody): Promise<SupervisionRecord> {
  const { action, ...rest } = body;
  const answer = await post<SupervisionRecord | undefined>(`/api/v1/records/${id}/${action}`, rest);
  // The detail shows the timeline: an answer without it is followed by a fetch.
  const whole = answer && typeof answer === 'object' && 'state' in answer && Array.isArray(answer.timeline);
  const r = whole ? answer : await fetchRecord(id);
  upsertRecord(r);
  return r;
}

/** `records.attachment_max_bytes` of the default configuration; a larger photo is re-encoded. */
export const ATTACHMENT_MAX_BYTES = 8 << 20;
/** The long side of a re-encoded photo: enough to read a label or a gauge. */
const PHOTO_MAX_SIDE = 2560;

/**
 * A file as the hub takes it: as it is when its type is accepted and it is small enough;
 * otherwise an image the browser can decode (a phone camera's 12 MB photo, a HEIC on a browser
 * that reads it) re-encoded as JPEG with its long side at most 2560 px. Anything else as it is
 * (the hub's answer says why it refuses it).
 */
export async function prepareUpload(file: File): Promise<File> {
  const type = file.type || guessType(file.name);
  if (ATTACHMENT_TYPES.includes(type) && file.size <= ATTACHMENT_MAX_BYTES) return file;
  if (!type.startsWith('image/') || typeof createImageBitmap !== 'function') return file;
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, PHOTO_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement('canvas');
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext('2d')!.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.85));
    if (!blob) return file;
    const name = `${file.name.replace(/\.[^.]*$/, '') || 'photo'}.jpg`;
    return new File([blob], name, { type: 'image/jpeg' });
  } catch {
    return file;
  }
}

/** Uploads a file as the record's attachment; the answer's id goes into a result or feedback. */
export async function uploadAttachment(id: number, file: File): Promise<Attachment> {
  const type = file.type || guessType(file.name);
  return postRaw<Attachment>(`/api/v1/records/${id}/attachments${qs({ name: file.name || 'photo' })}`, file, type);
}

function guessType(name: string): string {
  const ext = /\.([a-z0-9]+)$/i.exec(name)?.[1]?.toLowerCase();
  const types: Record<string, string> = {
    jpg: 'image/jpeg',
    jpeg: 'image/jpeg',
    png: 'image/png',
    webp: 'image/webp',
    pdf: 'application/pdf',
  };
  return (ext && types[ext]) || 'application/octet-stream';
}

/** The duty room turns a verified finding into a record; the answer is the record. */
export const recordFromFinding = (findingId: number, body: { item_code?: string; note?: string } = {}) =>
  post<SupervisionRecord>(`/api/v1/findings/${findingId}/record`, body);

// ---- Notices ---------------------------------------------------------------------------

export const notices = signal<Notice[]>([]);
const SEEN_KEY = 'hub.notices.seen';
function savedSeen(): number {
  try {
    return Number(localStorage.getItem(SEEN_KEY) || '0') || 0;
  } catch {
    return 0;
  }
}
/** The newest notice id this browser's user has opened the list with. */
export const noticesSeen = signal<number>(savedSeen());
export const unseenNotices = computed(() => notices.value.filter((n) => n.id > noticesSeen.value).length);

export function markNoticesSeen(): void {
  const max = notices.value.reduce((m, n) => Math.max(m, n.id), noticesSeen.value);
  noticesSeen.value = max;
  try {
    localStorage.setItem(SEEN_KEY, String(max));
  } catch {
    // Seen for this page only.
  }
}

export async function loadNotices(): Promise<void> {
  if (!may.notices()) return;
  const page = await get<Page<Notice>>('/api/v1/notices');
  notices.value = [...page.items].sort((a, b) => b.id - a.id);
}

// ---- Subscriptions ---------------------------------------------------------------------

export const listSubscriptions = async () => (await get<Page<Subscription>>('/api/v1/subscriptions')).items;
export const createSubscription = (s: NewSubscription) => post<Subscription>('/api/v1/subscriptions', s);
export const updateSubscription = (id: number, change: Partial<Pick<Subscription, 'enabled' | 'name' | 'url' | 'filters'>>) =>
  patch<Subscription>(`/api/v1/subscriptions/${id}`, change);
export const deleteSubscription = (id: number) => del<void>(`/api/v1/subscriptions/${id}`);
/** The answer carries the new `secret`, once. */
export const rotateSubscription = (id: number) => post<Subscription>(`/api/v1/subscriptions/${id}/rotate`, {});
export const listDeliveries = async (id: number, q: { record_id?: number | null; state?: string } = {}) =>
  (await get<Page<Delivery>>(`/api/v1/subscriptions/${id}/deliveries${qs({ record_id: q.record_id, state: q.state })}`)).items;
export const replay = (id: number, what: { event_id: string } | { from: string; to: string }) =>
  post<{ queued: number }>(`/api/v1/subscriptions/${id}/replay`, what);
