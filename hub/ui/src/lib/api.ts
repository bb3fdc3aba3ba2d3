// The one way the UI talks to the hub: JSON over fetch with the session cookie, the CSRF
// header on mutations, the API's one error body turned into an ApiError.

import { signal } from '@preact/signals';
import type { Session } from './types';

/** Who is logged in; null: nobody (the login page shows); undefined: not known yet. */
export const session = signal<Session | null | undefined>(undefined);

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

async function errorOf(r: Response): Promise<ApiError> {
  let message = `${r.status} ${r.statusText}`;
  try {
    const body = await r.json();
    if (body && body.error && typeof body.error.message === 'string') message = body.error.message;
  } catch {
    // Not the API's error body (a proxy's page): the status says enough.
  }
  return new ApiError(r.status, message);
}

/** A body sent as it is (a file), with its own content type, instead of JSON. */
export interface RawBody {
  data: Blob;
  type: string;
}

async function send(method: Method, path: string, body?: unknown, raw?: RawBody): Promise<Response> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const init: RequestInit = { method, headers, credentials: 'same-origin' };
  if (method !== 'GET') {
    const csrf = session.value?.csrf_token;
    if (csrf) headers['x-csrf-token'] = csrf;
    if (raw) {
      headers['content-type'] = raw.type;
      init.body = raw.data;
    } else {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body ?? {});
    }
  }
  return fetch(path, init);
}

/**
 * One API call. 401 logs the UI out (the login page shows); a 403 that names the CSRF token
 * (the session was renewed elsewhere) refreshes the token once and retries.
 */
export async function api<T>(method: Method, path: string, body?: unknown, raw?: RawBody): Promise<T> {
  let r = await send(method, path, body, raw);
  if (r.status === 403 && method !== 'GET') {
    const e = await errorOf(r.clone());
    if (/csrf/i.test(e.message) && (await refreshSession())) r = await send(method, path, body, raw);
  }
  if (r.status === 401 && path !== '/api/v1/session') session.value = null;
  if (!r.ok) throw await errorOf(r);
  if (r.status === 204) return undefined as T;
  const type = r.headers.get('content-type') || '';
  return (type.includes('json') ? await r.json() : await r.text()) as T;
}

export const get = <T>(path: string) => api<T>('GET', path);
export const post = <T>(path: string, body?: unknown) => api<T>('POST', path, body);
export const patch = <T>(path: string, body?: unknown) => api<T>('PATCH', path, body);
export const del = <T>(path: string) => api<T>('DELETE', path);
/** A POST whose body is `data` as it is (an upload), sent with `type` as its Content-Type. */
export const postRaw = <T>(path: string, data: Blob, type: string) => api<T>('POST', path, undefined, { data, type });

/**
 * Whether this browser logged in and has not logged out since (the session cookie itself is
 * HttpOnly): without it the login page shows at once, with no request bound to fail.
 */
const MARKER = 'hub.session';
export const maybeLoggedIn = () => localStorage.getItem(MARKER) === '1';
session.subscribe((s) => {
  if (s) localStorage.setItem(MARKER, '1');
  else if (s === null) localStorage.removeItem(MARKER);
});

/** Who am I; false when not logged in. */
export async function refreshSession(): Promise<boolean> {
  const r = await fetch('/api/v1/session', { headers: { accept: 'application/json' } });
  if (r.ok) {
    session.value = (await r.json()) as Session;
    return true;
  }
  if (r.status === 401) session.value = null;
  return false;
}

export async function login(username: string, password: string): Promise<void> {
  const r = await fetch('/api/v1/session', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (!r.ok) throw await errorOf(r);
  const s = (await r.json()) as Session;
  session.value = s;
  // The login answer has no integrator; whoami has everything.
  void refreshSession().catch(() => undefined);
}

/** What this browser keeps of a user's work (the language is the browser's, not the user's). */
const USER_KEYS = ['hub.wall.v1', 'hub.findings.filter', 'hub.records.filter', 'hub.notices.seen'];

export async function logout(): Promise<void> {
  try {
    await api('DELETE', '/api/v1/session');
  } finally {
    // The next person at this browser starts afresh: no wall, filters or alarms of this one.
    for (const k of USER_KEYS) localStorage.removeItem(k);
    session.value = null;
    location.reload();
  }
}

/** Query string of the set values. */
export function qs(params: Record<string, string | number | undefined | null | false>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '' && v !== false) p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : '';
}
