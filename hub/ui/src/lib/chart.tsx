// uPlot in a Preact component: made once per set of series, fed new data in place, sized to
// its container.

import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { dateTime } from './format';
import { lang, t } from './i18n';

export const PALETTE = ['#4fc3f7', '#ffb74d', '#81c784', '#e57373', '#ba68c8', '#fff176'];

const AXIS = {
  stroke: '#9aa7b4',
  grid: { stroke: 'rgba(255,255,255,0.07)', width: 1 },
  ticks: { stroke: 'rgba(255,255,255,0.15)', width: 1 },
  font: '11px system-ui, sans-serif',
};

export interface ChartSeries {
  label: string;
  color?: string;
  /** Bars instead of a line; `narrow` bars sit inside the wide ones of the same x. */
  bars?: boolean | 'narrow';
  /** A step line (0/1 signals). */
  step?: boolean;
  scale?: string;
}

export interface ChartProps {
  /** x (unix seconds) then one array per series. */
  data: uPlot.AlignedData;
  series: ChartSeries[];
  height: number;
  /** Unix seconds to mark with a vertical line (the finding's time). */
  marker?: number | null;
  /** The x range to show (unix seconds), whatever the data covers (one point included). */
  span?: [number, number];
  /** x axis shows dates rather than times. */
  days?: boolean;
  /** Hide the legend (small charts). */
  bare?: boolean;
  class?: string;
}

const pad = (n: number) => String(n).padStart(2, '0');

/** Tick labels in local 24-hour time: `08:00`, with `M-D` at midnight and for day steps. */
function timeTicks(days?: boolean): uPlot.Axis.DynamicValues {
  return (_u, ticks, _axis, _space, incr) =>
    ticks.map((t) => {
      const d = new Date(t * 1000);
      const date = `${d.getMonth() + 1}-${d.getDate()}`;
      if (days || incr >= 86_400) return date;
      if (d.getHours() === 0 && d.getMinutes() === 0) return date;
      return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    });
}

function options(p: ChartProps, width: number, marker: { current: number | null }): uPlot.Options {
  const scales = new Set(p.series.map((s) => s.scale ?? 'y'));
  const axes: uPlot.Axis[] = [{ ...AXIS, values: timeTicks(p.days) }];
  // Value scales: the first on the left, the second on the right, more without an axis of
  // their own; on/off signals ('bin') get no axis unless they are all there is.
  const valued = [...scales].filter((s) => s !== 'bin');
  const shown = valued.length ? valued : [...scales];
  [...scales].forEach((scale) => {
    const i = shown.indexOf(scale);
    axes.push({
      ...AXIS,
      scale,
      show: i >= 0 && i < 2,
      side: i === 1 ? 1 : 3,
      size: 62,
      grid: i === 0 ? AXIS.grid : { show: false },
    });
  });
  return {
    width,
    height: p.height,
    legend: { show: !p.bare },
    cursor: { show: !p.bare, points: { show: false } },
    scales: {
      // Bars at the ends of the range are drawn whole: half a step of room on either side.
      x: p.series.some((s) => s.bars)
        ? {
            time: true,
            range: (u, min, max) => {
              const xs = u.data[0];
              const step = xs.length > 1 ? xs[1] - xs[0] : 3600;
              return [min - step / 2, max + step / 2];
            },
          }
        : p.span
          ? { time: true, auto: false, range: p.span as uPlot.Range.MinMax }
          : { time: true },
      ...Object.fromEntries(
        [...scales].map((s) => [s, s === 'bin' ? { auto: false, range: [-0.1, 1.1] as uPlot.Range.MinMax } : { auto: true }]),
      ),
    },
    axes: p.bare ? [{ show: false }, ...[...scales].map((scale) => ({ scale, show: false }))] : axes,
    series: [
      { label: t('chart.time'), value: (_u, v) => (v === null || v === undefined ? '--' : dateTime(v * 1000)) },
      ...p.series.map((s, i) => {
        const color = s.color ?? PALETTE[i % PALETTE.length];
        return {
          label: s.label,
          stroke: color,
          width: 1.5,
          scale: s.scale ?? 'y',
          fill: s.bars ? color + '99' : undefined,
          paths: s.bars
            ? uPlot.paths.bars!({ size: s.bars === 'narrow' ? [0.35, 30] : [0.7, 60] })
            : s.step
              ? uPlot.paths.stepped!({ align: 1 })
              : undefined,
          // A lone reading has no line to draw: show the readings as dots when there are few.
          points: { show: s.bars ? false : (u: uPlot) => u.data[0].length < 8, size: 6 },
          spanGaps: false,
        } as uPlot.Series;
      }),
    ],
    hooks: {
      draw: [
        (u) => {
          const m = marker.current;
          if (m === null || m === undefined) return;
          const x = u.valToPos(m, 'x', true);
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
          const c = u.ctx;
          c.save();
          c.strokeStyle = '#ff5252';
          c.setLineDash([4, 3]);
          c.lineWidth = 1.5;
          c.beginPath();
          c.moveTo(x, u.bbox.top);
          c.lineTo(x, u.bbox.top + u.bbox.height);
          c.stroke();
          c.restore();
        },
      ],
    },
  };
}

export function Chart(p: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const marker = useRef<number | null>(p.marker ?? null);
  marker.current = p.marker ?? null;
  const shape = p.series.map((s) => `${s.label}|${s.bars}|${s.step}|${s.scale}`).join(',') + p.height + p.bare + lang.value;

  useEffect(() => {
    const el = box.current!;
    const u = new uPlot(options(p, Math.max(100, el.clientWidth), marker), p.data, el);
    plot.current = u;
    const ro = new ResizeObserver(() => {
      const w = Math.max(100, el.clientWidth);
      if (w !== u.width) u.setSize({ width: w, height: p.height });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
    // Rebuilt only when the series change; data updates below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape]);

  useEffect(() => {
    plot.current?.setData(p.data);
  }, [p.data]);

  return <div ref={box} class={`chart ${p.class ?? ''}`} />;
}

/** Readings to uPlot's columns: one series per numeric metric, oldest first. */
export function readingsColumns(
  items: { ts_ms: number; values: Record<string, unknown> }[],
): { metrics: string[]; data: uPlot.AlignedData } {
  const sorted = [...items].sort((a, b) => a.ts_ms - b.ts_ms);
  const metrics: string[] = [];
  for (const r of sorted)
    for (const [k, v] of Object.entries(r.values))
      if ((typeof v === 'number' || typeof v === 'boolean') && !metrics.includes(k)) metrics.push(k);
  const xs = sorted.map((r) => r.ts_ms / 1000);
  const cols = metrics.map((m) =>
    sorted.map((r) => {
      const v = r.values[m];
      return typeof v === 'number' ? v : typeof v === 'boolean' ? (v ? 1 : 0) : null;
    }),
  );
  return { metrics, data: [xs, ...cols] as uPlot.AlignedData };
}

/** Whether a metric looks like an on/off signal (put on its own scale, drawn as steps). */
export function isBinary(col: (number | null | undefined)[]): boolean {
  return col.length > 0 && col.every((v) => v === null || v === undefined || v === 0 || v === 1);
}
