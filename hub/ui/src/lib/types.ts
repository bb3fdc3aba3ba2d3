// Shapes of the hub's API answers (hub/src/api/*.rs), as far as the duty room reads them.

export type Role = 'admin' | 'duty_operator' | 'department' | 'integrator';
export type Severity = 'info' | 'minor' | 'major' | 'critical';
export type FindingState = 'active' | 'acknowledged' | 'cleared';
export type Verdict = 'unverified' | 'verified' | 'dismissed';

export const SEVERITIES: Severity[] = ['critical', 'major', 'minor', 'info'];
export const STATES: FindingState[] = ['active', 'acknowledged', 'cleared'];
export const VERDICTS: Verdict[] = ['unverified', 'verified', 'dismissed'];
export const DISMISS_REASONS = [
  'animal',
  'shadow_or_light',
  'authorised_person',
  'equipment_fault',
  'test_or_maintenance',
  'duplicate',
  'other',
] as const;
export type DismissReason = (typeof DISMISS_REASONS)[number];

export interface Department {
  id: string;
  name: string;
  region: string;
  industries: string[];
}

/** `GET /api/v1/session` and the answer of `POST /api/v1/session`. */
export interface Session {
  kind: 'user' | 'token';
  name: string;
  roles: Role[];
  department: Department | null;
  integrator?: string | null;
  csrf_token: string | null;
  expires_at?: string;
  /** `METHOD /path/{param}` of every operation the roles admit. */
  permissions?: string[];
}

export interface Site {
  id: string;
  name: string;
  region: string;
  industry: string;
  entity_name: string;
  uscc: string;
  integrator?: string | null;
}

/** `idle`: an on-demand camera not pulled now (nobody watches). */
export type CameraState = 'connecting' | 'online' | 'offline' | 'stopped' | 'idle';

export interface CameraHealth {
  state: CameraState;
  input_fps?: number;
  /** Older or newer hubs may call it so. */
  fps?: number;
  bitrate?: number;
  frames_in?: number;
  keyframes_in?: number;
  frames_decoded?: number;
  frames_dropped?: number;
  last_keyframe_at?: string | null;
  last_error?: string | null;
  reconnects?: number;
  /** When the state last changed, where the hub says so. */
  since?: string | number | null;
}

export interface CameraPull {
  mode: 'always' | 'on_demand';
  active: boolean;
  since: number | null;
  /** When an on-demand pull stops after its last viewer left. */
  stops_at?: number | null;
}

export interface Camera {
  id: string;
  site: string;
  name: string;
  analysis: 'keyframes' | 'fps' | 'off';
  enabled?: boolean;
  health: CameraHealth;
  viewers?: number;
  pull?: CameraPull;
  snapshot_url?: string;
  stats?: { frames_analysed: number; firings: number; analysis_error: string | null };
}

export interface Device {
  id: string;
  site_id: string;
  kind: string;
  name: string;
  online: boolean;
  last_seen: string | null;
  source?: string;
}

export interface Reading {
  ts: string;
  ts_ms: number;
  received_at?: string;
  values: Record<string, number | boolean | string | null>;
}

export interface Evidence {
  id: number;
  captured_at: string;
  annotated_url: string | null;
  frame_url: string | null;
  detections?: unknown;
  missing?: string | null;
}

export interface Finding {
  id: number;
  site_id: string;
  device_id: string | null;
  camera_id: string | null;
  rule: string;
  kind: string;
  severity: Severity;
  state: FindingState;
  item_code?: string | null;
  region?: string | null;
  summary: string;
  first_seen: string;
  last_seen: string;
  count: number;
  last_value?: number | null;
  details?: unknown;
  acknowledged_at?: string | null;
  cleared_at?: string | null;
  evidence?: Evidence[];
  verdict?: Verdict;
  verdict_reason?: DismissReason | null;
  verdict_note?: string | null;
  verdict_by?: string | null;
  verdict_at?: string | null;
  /** The supervision record this finding belongs to (docs/records.md); absent from older hubs. */
  record_id?: number | null;
}

export interface Page<T> {
  items: T[];
  next?: string | null;
}
