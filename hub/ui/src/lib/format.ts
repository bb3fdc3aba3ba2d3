// Formatting of times, rates, units and region codes for people.

import { ApiError } from './api';
import { lang, t } from './i18n';

export function toMs(v: string | number | null | undefined): number | null {
  if (v === null || v === undefined || v === '') return null;
  if (typeof v === 'number') return v;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? null : ms;
}

const pad = (n: number) => String(n).padStart(2, '0');

/** Local date and time, `2026-01-31 08:00:05`. */
export function dateTime(v: string | number | null | undefined): string {
  const ms = toMs(v);
  if (ms === null) return '—';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Local time of day, or date and time when not today. */
export function shortTime(v: string | number | null | undefined): string {
  const ms = toMs(v);
  if (ms === null) return '—';
  const d = new Date(ms);
  const now = new Date();
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === now.toDateString()) return hms;
  return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
}

export function ago(v: string | number | null | undefined, now = Date.now()): string {
  const ms = toMs(v);
  if (ms === null) return '—';
  const s = Math.max(0, (now - ms) / 1000);
  if (s < 60) return t('time.just_now');
  if (s < 3600) return t('time.min_ago', { n: Math.floor(s / 60) });
  if (s < 86400) return t('time.hour_ago', { n: Math.floor(s / 3600) });
  return t('time.day_ago', { n: Math.floor(s / 86400) });
}

export function bitrate(bps: number | undefined): string {
  if (bps === undefined || bps === null || Number.isNaN(bps)) return '—';
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
  if (bps >= 1e3) return `${(bps / 1e3).toFixed(0)} kbit/s`;
  return `${bps.toFixed(0)} bit/s`;
}

export function fps(v: number | undefined): string {
  return v === undefined || v === null ? '—' : `${v.toFixed(1)} fps`;
}

/**
 * The unit of a metric, read from its name's suffix (`temperature_c`, `nh3_ppm`, `weight_t`):
 * the API does not state units, and the topic contract names metrics this way.
 */
export function unitOf(metric: string): string {
  const m = /_([a-z0-9]+)$/i.exec(metric);
  const suffix = m ? m[1].toLowerCase() : '';
  const units: Record<string, string> = {
    c: '°C',
    f: '°F',
    k: 'K',
    ppm: 'ppm',
    ppb: 'ppb',
    pct: '%',
    percent: '%',
    rh: '%RH',
    t: 't',
    kg: 'kg',
    g: 'g',
    pa: 'Pa',
    kpa: 'kPa',
    hpa: 'hPa',
    v: 'V',
    mv: 'mV',
    a: 'A',
    w: 'W',
    kw: 'kW',
    kwh: 'kWh',
    lux: 'lx',
    db: 'dB',
    m: 'm',
    mm: 'mm',
    kmh: 'km/h',
    s: 's',
  };
  return units[suffix] ?? '';
}

export function metricValue(v: unknown, metric: string): string {
  if (typeof v === 'boolean') return v ? '1' : '0';
  if (typeof v !== 'number') return v === null || v === undefined ? '—' : String(v);
  const unit = unitOf(metric);
  const digits = Math.abs(v) >= 100 ? 1 : 2;
  const n = Number.isInteger(v) ? String(v) : v.toFixed(digits);
  return unit ? `${n} ${unit}` : n;
}

/** Province-level divisions of GB/T 2260 (the first two digits), for region labels. */
const PROVINCES: Record<string, [string, string]> = {
  '11': ['北京市', 'Beijing'],
  '12': ['天津市', 'Tianjin'],
  '13': ['河北省', 'Hebei'],
  '14': ['山西省', 'Shanxi'],
  '15': ['内蒙古自治区', 'Inner Mongolia'],
  '21': ['辽宁省', 'Liaoning'],
  '22': ['吉林省', 'Jilin'],
  '23': ['黑龙江省', 'Heilongjiang'],
  '31': ['上海市', 'Shanghai'],
  '32': ['江苏省', 'Jiangsu'],
  '33': ['浙江省', 'Zhejiang'],
  '34': ['安徽省', 'Anhui'],
  '35': ['福建省', 'Fujian'],
  '36': ['江西省', 'Jiangxi'],
  '37': ['山东省', 'Shandong'],
  '41': ['河南省', 'Henan'],
  '42': ['湖北省', 'Hubei'],
  '43': ['湖南省', 'Hunan'],
  '44': ['广东省', 'Guangdong'],
  '45': ['广西壮族自治区', 'Guangxi'],
  '46': ['海南省', 'Hainan'],
  '50': ['重庆市', 'Chongqing'],
  '51': ['四川省', 'Sichuan'],
  '52': ['贵州省', 'Guizhou'],
  '53': ['云南省', 'Yunnan'],
  '54': ['西藏自治区', 'Tibet'],
  '61': ['陕西省', 'Shaanxi'],
  '62': ['甘肃省', 'Gansu'],
  '63': ['青海省', 'Qinghai'],
  '64': ['宁夏回族自治区', 'Ningxia'],
  '65': ['新疆维吾尔自治区', 'Xinjiang'],
  '71': ['台湾省', 'Taiwan'],
  '81': ['香港特别行政区', 'Hong Kong'],
  '82': ['澳门特别行政区', 'Macao'],
};

/** `陕西省 610116` / `Shaanxi 610116`; the bare code for an unknown province. */
export function regionLabel(code: string | null | undefined): string {
  if (!code) return '—';
  const p = PROVINCES[code.slice(0, 2)];
  if (!p) return code;
  return `${lang.value === 'zh' ? p[0] : p[1]} ${code}`;
}

/** A span of time for people: `25 分钟`, `3 小时`, `2 天` (rounded down, at least a minute). */
export function duration(ms: number): string {
  const s = Math.abs(ms) / 1000;
  if (s < 3600) return t('dur.min', { n: Math.max(1, Math.floor(s / 60)) });
  if (s < 86400) return t('dur.hour', { n: Math.floor(s / 3600) });
  return t('dur.day', { n: Math.floor(s / 86400) });
}

/** `in 25 min` or `overdue by 3 h` against `due`. */
export function dueIn(due: string | number | null | undefined, now = Date.now()): string {
  const ms = toMs(due);
  if (ms === null) return '—';
  return ms >= now ? t('due.in', { t: duration(ms - now) }) : t('due.overdue', { t: duration(now - ms) });
}

export function fileSize(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '—';
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(0)} KiB`;
  return `${bytes} B`;
}

/** The value of an `<input type=datetime-local>` for a moment (local time, minutes). */
export function localInput(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** An `<input type=datetime-local>` value (local time) as RFC 3339 UTC; null when empty or bad. */
export function fromLocalInput(v: string): string | null {
  if (!v) return null;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? null : new Date(ms).toISOString();
}

/** `user:operator` → `operator`; `token:7:xian-food-system` → `xian-food-system`; else as is. */
export function actorName(actor: string | null | undefined): string {
  if (!actor) return '—';
  const user = /^user:(.+)$/.exec(actor);
  if (user) return user[1];
  const token = /^token:[^:]+:(.+)$/.exec(actor);
  if (token) return `${token[1]} (API)`;
  return actor;
}

/** An error for people: a refusal (403) says so before the API's words; the rest as worded. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError && e.status === 403) return `${t('error.forbidden')}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}
