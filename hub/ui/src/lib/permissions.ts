// What the logged-in user may do: the session's `permissions` (`METHOD /path`), or, from an
// older hub without them, the roles' rules of hub/src/api/mod.rs. The API refuses the rest
// anyway; this only keeps the UI from offering it.

import { computed } from '@preact/signals';
import { session } from './api';
import type { Role } from './types';

const READ_FINDINGS: Role[] = ['duty_operator', 'department'];
const OPERATE: Role[] = ['duty_operator'];
const VIEW: Role[] = ['duty_operator', 'department', 'integrator'];

function byRoles(method: string, path: string, roles: Role[]): boolean {
  if (roles.includes('admin')) return true;
  const any = (allowed: Role[]) => roles.some((r) => allowed.includes(r));
  if (path.startsWith('/api/v1/findings')) {
    return method === 'GET' ? any(READ_FINDINGS) : any(OPERATE);
  }
  if (/^\/api\/v1\/(cameras|devices|sites|models)/.test(path)) {
    return method === 'GET' ? any(VIEW) : roles.includes('integrator');
  }
  return false;
}

const granted = computed(() => new Set(session.value?.permissions ?? []));

/** Whether the user may call `METHOD path` (path as the route is written: `{id}`). */
export function can(method: string, path: string): boolean {
  const s = session.value;
  if (!s) return false;
  if (s.permissions) return granted.value.has(`${method.toUpperCase()} ${path}`);
  return byRoles(method.toUpperCase(), path, s.roles);
}

export const may = {
  findings: () => can('GET', '/api/v1/findings'),
  stream: () => can('GET', '/api/v1/findings/stream'),
  cameras: () => can('GET', '/api/v1/cameras'),
  live: () => can('GET', '/api/v1/cameras/{id}/live'),
  devices: () => can('GET', '/api/v1/devices'),
  readings: () => can('GET', '/api/v1/devices/{id}/readings'),
  sites: () => can('GET', '/api/v1/sites'),
  verify: () => can('POST', '/api/v1/findings/{id}/verify'),
  dismiss: () => can('POST', '/api/v1/findings/{id}/dismiss'),
  acknowledge: () => can('POST', '/api/v1/findings/{id}/acknowledge'),
  clear: () => can('POST', '/api/v1/findings/{id}/clear'),
  createRecord: () => can('POST', '/api/v1/findings/{id}/record'),
  records: () => can('GET', '/api/v1/records'),
  record: () => can('GET', '/api/v1/records/{id}'),
  recordAction: (action: string) => can('POST', `/api/v1/records/{id}/${action}`),
  upload: () => can('POST', '/api/v1/records/{id}/attachments'),
  catalogue: () => can('GET', '/api/v1/catalogue'),
  notices: () => can('GET', '/api/v1/notices'),
  subscriptions: () => can('GET', '/api/v1/subscriptions'),
  createSubscription: () => can('POST', '/api/v1/subscriptions'),
  updateSubscription: () => can('PATCH', '/api/v1/subscriptions/{id}'),
  deleteSubscription: () => can('DELETE', '/api/v1/subscriptions/{id}'),
  rotate: () => can('POST', '/api/v1/subscriptions/{id}/rotate'),
  deliveries: () => can('GET', '/api/v1/subscriptions/{id}/deliveries'),
  replay: () => can('POST', '/api/v1/subscriptions/{id}/replay'),
};
