// The sensor panel: each site's devices with their latest values, online state and a
// sparkline of the last hour; a device's chart over a chosen range.

import { useEffect, useState } from 'preact/hooks';
import { devices, deviceById, loaded, siteById } from '../lib/data';
import { ago, dateTime, metricValue, regionLabel } from '../lib/format';
import { label, t } from '../lib/i18n';
import { fetchReadings } from '../lib/readings';
import { go, route } from '../lib/route';
import { pageVisible } from '../lib/visibility';
import type { Device, Reading } from '../lib/types';
import { ReadingsChart } from './ReadingsChart';

const HOUR = 3_600_000;
const RANGES = [
  ['1h', HOUR],
  ['6h', 6 * HOUR],
  ['24h', 24 * HOUR],
  ['7d', 7 * 24 * HOUR],
] as const;

/** The last hour of every device, refreshed every 30 s while the page is shown. */
function useLastHour(list: Device[]): Map<string, Reading[]> {
  const [data, setData] = useState<Map<string, Reading[]>>(new Map());
  const ids = list.map((d) => d.id).join(',');
  useEffect(() => {
    if (!pageVisible.value) return;
    let stop = false;
    const load = async () => {
      const now = Date.now();
      const results = await Promise.all(
        list.map(async (d) => {
          try {
            const r = await fetchReadings(d.id, now - HOUR, now + 60_000, { limit: 1000, pages: 1 });
            return [d.id, r.items] as const;
          } catch {
            return [d.id, [] as Reading[]] as const;
          }
        }),
      );
      if (!stop) setData(new Map(results));
    };
    void load();
    const timer = window.setInterval(load, 30_000);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [ids, pageVisible.value]);
  return data;
}

/** The first numeric metric that is not on/off, as an SVG polyline. */
function Sparkline({ items }: { items: Reading[] }) {
  const sorted = [...items].sort((a, b) => a.ts_ms - b.ts_ms);
  const metrics = new Set<string>();
  for (const r of sorted) for (const [k, v] of Object.entries(r.values)) if (typeof v === 'number') metrics.add(k);
  const metric = [...metrics].find((m) => sorted.some((r) => r.values[m] !== 0 && r.values[m] !== 1)) ?? [...metrics][0];
  if (!metric) return <svg class="spark" viewBox="0 0 100 24" />;
  const pts = sorted
    .map((r) => [r.ts_ms, r.values[metric]] as const)
    .filter((p): p is readonly [number, number] => typeof p[1] === 'number');
  if (pts.length < 2) return <svg class="spark" viewBox="0 0 100 24" />;
  const x0 = pts[0][0];
  const x1 = pts[pts.length - 1][0];
  const ys = pts.map((p) => p[1]);
  const lo = Math.min(...ys);
  const hi = Math.max(...ys);
  const span = hi - lo || 1;
  const d = pts
    .map(([x, y]) => `${(((x - x0) / (x1 - x0 || 1)) * 100).toFixed(2)},${(22 - ((y - lo) / span) * 20).toFixed(2)}`)
    .join(' ');
  return (
    <svg class="spark" viewBox="0 0 100 24" preserveAspectRatio="none" data-sparkline={metric}>
      <title>{`${metric}: ${metricValue(lo, metric)} – ${metricValue(hi, metric)}`}</title>
      <polyline points={d} fill="none" stroke="currentColor" stroke-width="1.2" vector-effect="non-scaling-stroke" />
    </svg>
  );
}

function Card({ d, items, selected }: { d: Device; items: Reading[] | undefined; selected: boolean }) {
  const latest = items?.reduce<Reading | null>((a, r) => (!a || r.ts_ms > a.ts_ms ? r : a), null) ?? null;
  return (
    <button
      type="button"
      class={`card device ${d.online ? 'online' : 'offline'} ${selected ? 'selected' : ''}`}
      data-device={d.id}
      data-online={String(d.online)}
      onClick={() => go('sensors', d.id)}
    >
      <div class="card-head">
        <span class={`dot ${d.online ? 'online' : 'offline'}`} />
        <span class="card-title">{d.name || d.id}</span>
        <span class="muted small">{d.kind}</span>
      </div>
      <div class="values">
        {latest ? (
          Object.entries(latest.values).map(([k, v]) => (
            <span class="value" key={k} data-metric={k}>
              <span class="muted small">{k}</span>
              <strong>{metricValue(v, k)}</strong>
            </span>
          ))
        ) : (
          <span class="muted small">{items ? t('sensors.no_readings') : t('loading')}</span>
        )}
      </div>
      {items && items.length > 1 && <Sparkline items={items} />}
      <div class="muted small">
        {d.online ? t('sensors.online') : t('sensors.offline')} · {t('sensors.last_seen')}:{' '}
        <span title={dateTime(d.last_seen)}>{d.last_seen ? ago(d.last_seen) : t('sensors.never')}</span>
      </div>
    </button>
  );
}

function DeviceDetail({ id }: { id: string }) {
  const d = deviceById.value.get(id);
  const [range, setRange] = useState<(typeof RANGES)[number][0]>('1h');
  // The period's end moves with each refresh of a short range, so it is taken per minute.
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 60_000);
    return () => clearInterval(timer);
  }, []);
  if (!d) return <p class="muted pad">{loaded.value.devices ? `${id}?` : t('loading')}</p>;
  const site = siteById.value.get(d.site_id);
  const span = RANGES.find((r) => r[0] === range)![1];
  return (
    <article class="detail" data-device-detail={d.id}>
      <header>
        <span class={`dot ${d.online ? 'online' : 'offline'}`} />
        <h2>{d.name || d.id}</h2>
        <button type="button" class="icon" title={t('close')} onClick={() => go('sensors')}>
          ×
        </button>
      </header>
      <dl class="fields">
        <dt>ID</dt>
        <dd>{d.id}</dd>
        <dt>{t('field.kind')}</dt>
        <dd>{d.kind}</dd>
        <dt>{t('field.site')}</dt>
        <dd>{site?.name ?? d.site_id}</dd>
        <dt>{t('sensors.last_seen')}</dt>
        <dd>{dateTime(d.last_seen)}</dd>
      </dl>
      <div class="toolbar">
        <span class="muted">{t('sensors.range')}</span>
        {RANGES.map(([k]) => (
          <button type="button" key={k} class={k === range ? 'seg active' : 'seg'} data-range={k} onClick={() => setRange(k)}>
            {k}
          </button>
        ))}
      </div>
      <ReadingsChart device={d.id} fromMs={now - span} toMs={now + 60_000} height={300} refreshMs={span <= HOUR ? 30_000 : 0} />
    </article>
  );
}

export function Sensors() {
  const list = devices.value;
  const data = useLastHour(list);
  const selected = route.value.view === 'sensors' ? route.value.id : null;
  const bySite = new Map<string, Device[]>();
  for (const d of list) bySite.set(d.site_id, [...(bySite.get(d.site_id) ?? []), d]);
  const siteIds = [...bySite.keys()].sort();
  return (
    <div class={`sensors ${selected ? 'with-detail' : ''}`}>
      <section class="sensors-list">
        <h2>{t('sensors.title')}</h2>
        {!loaded.value.devices && <p class="muted">{t('loading')}</p>}
        {loaded.value.devices && !list.length && <p class="muted">{t('sensors.empty')}</p>}
        {siteIds.map((sid) => {
          const site = siteById.value.get(sid);
          const ds = bySite.get(sid)!.sort((a, b) => a.id.localeCompare(b.id));
          return (
            <section class="site-group" key={sid} data-site={sid}>
              <h3>
                {site?.name ?? sid}
                <span class="muted small">
                  {' '}
                  {site ? `${label('industry', site.industry)} · ${regionLabel(site.region)}` : ''} ·{' '}
                  {ds.filter((d) => d.online).length}/{ds.length} {t('sensors.online')}
                </span>
              </h3>
              <div class="cards">
                {ds.map((d) => (
                  <Card key={d.id} d={d} items={data.get(d.id)} selected={d.id === selected} />
                ))}
              </div>
            </section>
          );
        })}
      </section>
      {selected && (
        <aside class="sensors-detail">
          <DeviceDetail id={selected} />
        </aside>
      )}
    </div>
  );
}
