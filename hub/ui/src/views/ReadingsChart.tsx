// A device's readings over a period as a uPlot chart: a line per metric, on/off metrics as
// steps on their own scale, an optional marker (a finding's time).

import { useEffect, useState } from 'preact/hooks';
import { Chart, isBinary, readingsColumns, type ChartSeries } from '../lib/chart';
import { t } from '../lib/i18n';
import { unitOf } from '../lib/format';
import { fetchReadings } from '../lib/readings';
import type uPlot from 'uplot';

interface Props {
  device: string;
  fromMs: number;
  toMs: number;
  markerMs?: number | null;
  height?: number;
  /** Reload this often (ms) while shown; 0: never. */
  refreshMs?: number;
}

export function ReadingsChart({ device, fromMs, toMs, markerMs, height = 220, refreshMs = 0 }: Props) {
  const [state, setState] = useState<{
    series: ChartSeries[];
    data: uPlot.AlignedData;
    truncated: number | null;
  } | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let stop = false;
    const load = async () => {
      try {
        const span = toMs - fromMs;
        // Long ranges take more pages; every page is up to 10 000 readings.
        const pages = span > 2 * 86_400_000 ? 6 : 3;
        const r = await fetchReadings(device, fromMs, toMs, { limit: 10_000, pages });
        if (stop) return;
        const { metrics, data } = readingsColumns(r.items);
        const series = metrics.map((m, i) => {
          const binary = isBinary(data[i + 1] as (number | null)[]);
          const unit = unitOf(m);
          // One scale per unit (a metric without one has its own), so that °C and % do not share.
          return { label: unit ? `${m} (${unit})` : m, step: binary, scale: binary ? 'bin' : `v:${unit || m}` };
        });
        setState({ series, data, truncated: r.truncated ? r.items.length : null });
        setError(null);
      } catch (e) {
        if (!stop) setError((e as Error).message);
      }
    };
    void load();
    const timer = refreshMs ? window.setInterval(load, refreshMs) : 0;
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [device, fromMs, toMs, refreshMs]);

  if (error) return <p class="error">{error}</p>;
  if (!state) return <p class="muted">{t('loading')}</p>;
  if (!state.series.length) return <p class="muted">{t('readings.none')}</p>;
  return (
    <div data-readings-chart={device}>
      <Chart
        data={state.data}
        series={state.series}
        height={height}
        marker={markerMs ? markerMs / 1000 : null}
        span={[fromMs / 1000, toMs / 1000]}
      />
      {state.truncated !== null && <p class="muted small">{t('readings.truncated', { n: state.truncated })}</p>}
    </div>
  );
}
