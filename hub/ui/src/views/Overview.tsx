// Counts and trends computed in the browser from the list APIs: cameras and devices online,
// open findings by severity, findings per hour and per day, per site and per region.

import { useEffect, useState } from 'preact/hooks';
import { get, qs } from '../lib/api';
import { Chart } from '../lib/chart';
import { cameras, devices, sites } from '../lib/data';
import { regionLabel, toMs } from '../lib/format';
import { label, t } from '../lib/i18n';
import { may } from '../lib/permissions';
import { SEVERITIES, type Finding, type Page } from '../lib/types';
import type uPlot from 'uplot';
import type { ComponentChildren } from 'preact';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** The API's page is at most 1000; 500 a page, six pages at most per question. */
const PAGE = 500;
const PAGES = 6;

async function all(params: Record<string, string | number>): Promise<{ items: Finding[]; partial: boolean }> {
  const items: Finding[] = [];
  let cursor: string | null | undefined;
  for (let i = 0; i < PAGES; i++) {
    const page = await get<Page<Finding>>(`/api/v1/findings${qs({ ...params, limit: PAGE, cursor: cursor ?? '' })}`);
    items.push(...page.items);
    cursor = page.next;
    if (!cursor) return { items, partial: false };
  }
  return { items, partial: true };
}

interface Stats {
  open: Finding[];
  recent: Finding[];
  partial: number | null;
  at: number;
}

function useFindingStats(): { stats: Stats | null; error: string | null } {
  const [stats, setStats] = useState<Stats | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!may.findings()) return;
    let stop = false;
    const load = async () => {
      const now = Date.now();
      try {
        const [open, recent] = await Promise.all([
          all({ state: 'active,acknowledged' }),
          all({ since: now - 14 * DAY }),
        ]);
        if (stop) return;
        const partial = open.partial || recent.partial ? Math.max(open.items.length, recent.items.length) : null;
        setStats({ open: open.items, recent: recent.items, partial, at: now });
        setError(null);
      } catch (e) {
        if (!stop) setError((e as Error).message);
      }
    };
    void load();
    const timer = window.setInterval(() => document.visibilityState === 'visible' && load(), 60_000);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, []);
  return { stats, error };
}

/** Counts of findings opened (first_seen) per bucket of `size` ms, the last `n` buckets. */
function buckets(items: Finding[], now: number, size: number, n: number, alignDays: boolean): uPlot.AlignedData {
  let end: number;
  if (alignDays) {
    const d = new Date(now);
    d.setHours(0, 0, 0, 0);
    end = d.getTime() + DAY;
  } else {
    end = Math.floor(now / HOUR) * HOUR + HOUR;
  }
  const start = end - size * n;
  const xs = Array.from({ length: n }, (_, i) => (start + i * size) / 1000);
  const total = new Array<number>(n).fill(0);
  const severe = new Array<number>(n).fill(0);
  for (const f of items) {
    const ms = toMs(f.first_seen);
    if (ms === null || ms < start || ms >= end) continue;
    const i = Math.floor((ms - start) / size);
    total[i]++;
    if (f.severity === 'critical' || f.severity === 'major') severe[i]++;
  }
  return [xs, total, severe];
}

function Stat({ title, children, hook }: { title: string; children: ComponentChildren; hook: string }) {
  return (
    <div class="stat" data-stat={hook}>
      <div class="muted small">{title}</div>
      <div class="stat-body">{children}</div>
    </div>
  );
}

interface Row {
  key: string;
  label: string;
  sites: number;
  camOn: number;
  cams: number;
  devOn: number;
  devs: number;
  open: number;
  critical: number;
  recent: number;
}

function rows(stats: Stats | null, keyOf: (siteId: string) => [string, string]): Row[] {
  const m = new Map<string, Row>();
  const row = (siteId: string) => {
    const [key, lbl] = keyOf(siteId);
    let r = m.get(key);
    if (!r) {
      r = { key, label: lbl, sites: 0, camOn: 0, cams: 0, devOn: 0, devs: 0, open: 0, critical: 0, recent: 0 };
      m.set(key, r);
    }
    return r;
  };
  for (const s of sites.value) row(s.id).sites++;
  for (const c of cameras.value) {
    const r = row(c.site);
    r.cams++;
    if (c.health.state === 'online') r.camOn++;
  }
  for (const d of devices.value) {
    const r = row(d.site_id);
    r.devs++;
    if (d.online) r.devOn++;
  }
  for (const f of stats?.open ?? []) {
    const r = row(f.site_id);
    r.open++;
    if (f.severity === 'critical') r.critical++;
  }
  for (const f of stats?.recent ?? []) row(f.site_id).recent++;
  return [...m.values()].sort((a, b) => a.key.localeCompare(b.key));
}

function Table({ title, data, first, hook, showSites }: { title: string; data: Row[]; first: string; hook: string; showSites?: boolean }) {
  const findings = may.findings();
  return (
    <section class="panel">
      <h3>{title}</h3>
      <table class="table" data-table={hook}>
        <thead>
          <tr>
            <th>{first}</th>
            {showSites && <th>{t('overview.sites')}</th>}
            <th>{t('col.cameras')}</th>
            <th>{t('col.devices')}</th>
            {findings && <th>{t('overview.findings_open')}</th>}
            {findings && <th>{label('severity', 'critical')}</th>}
            {findings && <th>{t('overview.findings_14d')}</th>}
          </tr>
        </thead>
        <tbody>
          {data.map((r) => (
            <tr key={r.key} data-row={r.key}>
              <td>{r.label}</td>
              {showSites && <td>{r.sites}</td>}
              <td>
                {r.camOn}/{r.cams}
              </td>
              <td>
                {r.devOn}/{r.devs}
              </td>
              {findings && <td>{r.open}</td>}
              {findings && <td class={r.critical ? 'crit' : ''}>{r.critical}</td>}
              {findings && <td>{r.recent}</td>}
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function Overview() {
  const { stats, error } = useFindingStats();
  const camOn = cameras.value.filter((c) => c.health.state === 'online').length;
  const devOn = devices.value.filter((d) => d.online).length;
  const siteMap = new Map(sites.value.map((s) => [s.id, s]));
  const now = stats?.at ?? Date.now();
  const sevSeries = [
    { label: t('all'), bars: true, color: '#4fc3f7' },
    { label: `${label('severity', 'critical')}+${label('severity', 'major')}`, bars: 'narrow' as const, color: '#ff7043' },
  ];
  return (
    <div class="overview">
      <div class="stats">
        <Stat title={t('overview.cameras')} hook="cameras">
          <span class="ok-text" data-count="online">{camOn}</span> {t('overview.online')} ·{' '}
          <span class={cameras.value.length - camOn ? 'crit' : ''} data-count="offline">
            {cameras.value.length - camOn}
          </span>{' '}
          {t('overview.offline')}
        </Stat>
        <Stat title={t('overview.devices')} hook="devices">
          <span class="ok-text" data-count="online">{devOn}</span> {t('overview.online')} ·{' '}
          <span class={devices.value.length - devOn ? 'crit' : ''} data-count="offline">
            {devices.value.length - devOn}
          </span>{' '}
          {t('overview.offline')}
        </Stat>
        {may.findings() && (
          <Stat title={t('overview.open')} hook="open">
            {SEVERITIES.map((s) => (
              <span key={s} class={`badge severity-${s}`} data-count={s}>
                {label('severity', s)} {stats ? stats.open.filter((f) => f.severity === s).length : '…'}
              </span>
            ))}
          </Stat>
        )}
      </div>
      {error && <p class="error">{error}</p>}
      {stats?.partial && <p class="muted small">{t('overview.partial', { n: stats.partial })}</p>}
      {may.findings() ? (
        <div class="charts">
          <section class="panel" data-chart="per-hour">
            <h3>{t('overview.per_hour')}</h3>
            {stats ? <Chart data={buckets(stats.recent, now, HOUR, 24, false)} series={sevSeries} height={200} /> : <p class="muted">{t('loading')}</p>}
          </section>
          <section class="panel" data-chart="per-day">
            <h3>{t('overview.per_day')}</h3>
            {stats ? (
              <Chart
                data={buckets(stats.recent, now, DAY, 14, true)}
                series={[{ label: t('all'), color: '#4fc3f7' }, { label: sevSeries[1].label, color: '#ff7043' }]}
                height={200}
                days
              />
            ) : (
              <p class="muted">{t('loading')}</p>
            )}
          </section>
        </div>
      ) : (
        <p class="muted">{t('overview.no_findings_access')}</p>
      )}
      <div class="tables">
        <Table
          title={t('overview.per_site')}
          first={t('col.site')}
          hook="per-site"
          data={rows(stats, (id) => [id, siteMap.get(id)?.name ?? id])}
        />
        <Table
          title={t('overview.per_region')}
          first={t('col.region')}
          hook="per-region"
          showSites
          data={rows(stats, (id) => {
            const region = siteMap.get(id)?.region ?? '';
            return [region, regionLabel(region)];
          })}
        />
      </div>
    </div>
  );
}
