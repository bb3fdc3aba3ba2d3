// The findings queue: filters, the list (live through the event stream), and the selected
// finding's details with its evidence, readings and the actions the user may take.

import { useEffect, useState } from 'preact/hooks';
import { ApiError, post } from '../lib/api';
import { cameraById, cameras, deviceById, devices, siteById, sites } from '../lib/data';
import {
  byId,
  EMPTY_FILTER,
  fetchOne,
  filter,
  listError,
  listState,
  loadMore,
  next,
  reload,
  setFilter,
  streamState,
  upsert,
  visible,
  type Filter,
} from '../lib/findings';
import { dateTime, errorText, metricValue, regionLabel, shortTime, toMs } from '../lib/format';
import { label, t } from '../lib/i18n';
import { may } from '../lib/permissions';
import { regionLevels, prefixOf } from '../lib/regions';
import { go, route } from '../lib/route';
import { DISMISS_REASONS, SEVERITIES, STATES, VERDICTS, type Finding } from '../lib/types';
import { recordFromFinding } from '../lib/records';
import { ReadingsChart } from './ReadingsChart';

function Select(p: {
  name: keyof Filter;
  options: [string, string][];
  title: string;
}) {
  const f = filter.value;
  return (
    <label class="filter">
      <span>{p.title}</span>
      <select
        name={p.name}
        value={f[p.name]}
        onChange={(e) => setFilter({ ...f, [p.name]: (e.target as HTMLSelectElement).value })}
      >
        <option value="">{t('all')}</option>
        {p.options.map(([v, l]) => (
          <option key={v} value={v}>
            {l}
          </option>
        ))}
      </select>
    </label>
  );
}

function Filters() {
  const f = filter.value;
  const rules = new Set<string>();
  const kinds = new Set<string>();
  for (const x of byId.value.values()) {
    rules.add(x.rule);
    kinds.add(x.kind);
  }
  if (f.kind.startsWith('rule:')) rules.add(f.kind.slice(5));
  if (f.kind.startsWith('kind:')) kinds.add(f.kind.slice(5));
  const industries = [...new Set(sites.value.map((s) => s.industry))].sort();
  const regions = regionLevels(sites.value.map((s) => s.region));
  return (
    <div class="filters" data-filters>
      <Select name="severity" title={t('filter.severity')} options={SEVERITIES.map((s) => [s, label('severity', s)])} />
      <Select name="state" title={t('filter.state')} options={STATES.map((s) => [s, label('fstate', s)])} />
      <Select name="verdict" title={t('filter.verdict')} options={VERDICTS.map((s) => [s, label('verdict', s)])} />
      <Select name="site" title={t('filter.site')} options={sites.value.map((s) => [s.id, s.name])} />
      <Select
        name="region"
        title={t('filter.region')}
        options={regions.map((r) => [prefixOf(r), regionLabel(r)])}
      />
      <Select name="industry" title={t('filter.industry')} options={industries.map((i) => [i, label('industry', i)])} />
      <Select
        name="kind"
        title={t('filter.kind')}
        options={[
          ...[...kinds].sort().map((k): [string, string] => [`kind:${k}`, `${t('field.kind')}: ${k}`]),
          ...[...rules].sort().map((r): [string, string] => [`rule:${r}`, `${t('field.rule')}: ${r}`]),
        ]}
      />
      <Select
        name="source"
        title={t('filter.source')}
        options={[
          ...cameras.value.map((c): [string, string] => [`camera:${c.id}`, `${t('source.camera')} · ${c.name || c.id}`]),
          ...devices.value.map((d): [string, string] => [`device:${d.id}`, `${t('source.device')} · ${d.name || d.id}`]),
        ]}
      />
      <button type="button" class="link" data-role="reset-filters" onClick={() => setFilter({ ...EMPTY_FILTER })}>
        {t('filter.reset')}
      </button>
    </div>
  );
}

function sourceName(f: Finding): string {
  if (f.camera_id) return cameraById.value.get(f.camera_id)?.name || f.camera_id;
  if (f.device_id) return deviceById.value.get(f.device_id)?.name || f.device_id;
  return '—';
}

function Badge({ kind, value }: { kind: 'severity' | 'fstate' | 'verdict'; value: string }) {
  return (
    <span class={`badge ${kind}-${value}`} data-badge={kind}>
      {label(kind, value)}
    </span>
  );
}

function Row({ f, selected }: { f: Finding; selected: boolean }) {
  const site = siteById.value.get(f.site_id);
  return (
    <li
      class={`row sev-${f.severity} ${selected ? 'selected' : ''} state-${f.state}`}
      data-finding={f.id}
      data-severity={f.severity}
      data-state={f.state}
      data-verdict={f.verdict ?? 'unverified'}
      onClick={() => go('findings', f.id)}
      tabIndex={0}
      onKeyDown={(e) => e.key === 'Enter' && go('findings', f.id)}
    >
      <Badge kind="severity" value={f.severity} />
      <span class="row-time" title={dateTime(f.first_seen)}>
        {shortTime(f.last_seen)}
      </span>
      <span class="row-summary">
        {f.summary}
        {f.count > 1 && <span class="count">×{f.count}</span>}
      </span>
      <span class="row-where muted">
        {site?.name || f.site_id} · {sourceName(f)}
      </span>
      <span class="row-badges">
        <Badge kind="fstate" value={f.state} />
        <Badge kind="verdict" value={f.verdict ?? 'unverified'} />
      </span>
    </li>
  );
}

function Evidence({ f }: { f: Finding }) {
  const items = f.evidence ?? [];
  const [pick, setPick] = useState<number | null>(null);
  const [variant, setVariant] = useState<'annotated' | 'frame'>('annotated');
  if (!f.camera_id) return null;
  if (!items.length) return <p class="muted">{t('evidence.none')}</p>;
  const e = items.find((x) => x.id === pick) ?? items[items.length - 1];
  const url = variant === 'frame' ? e.frame_url : e.annotated_url;
  return (
    <section class="evidence">
      <h3>
        {t('evidence.title')}
        <span class="seg-group">
          <button type="button" class={variant === 'annotated' ? 'seg active' : 'seg'} onClick={() => setVariant('annotated')}>
            {t('evidence.annotated')}
          </button>
          <button type="button" class={variant === 'frame' ? 'seg active' : 'seg'} onClick={() => setVariant('frame')}>
            {t('evidence.frame')}
          </button>
        </span>
      </h3>
      {e.missing || !url ? (
        <p class="error">{t('evidence.missing', { why: e.missing ?? '—' })}</p>
      ) : (
        <a href={url} target="_blank" rel="noopener">
          <img class="evidence-img" data-evidence={e.id} src={url} alt={f.summary} />
        </a>
      )}
      <p class="muted small">{dateTime(e.captured_at)}</p>
      {items.length > 1 && (
        <div class="evidence-list">
          {items.map((x) => (
            <button type="button" key={x.id} class={x.id === e.id ? 'seg active' : 'seg'} onClick={() => setPick(x.id)}>
              {shortTime(x.captured_at)}
            </button>
          ))}
        </div>
      )}
    </section>
  );
}

function Actions({ f }: { f: Finding }) {
  const [note, setNote] = useState('');
  const [reason, setReason] = useState<string>('');
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);
  useEffect(() => {
    setNote('');
    setReason('');
    setMessage(null);
  }, [f.id]);

  const verdict = f.verdict ?? 'unverified';
  const canVerify = may.verify() && verdict === 'unverified';
  const canDismiss = may.dismiss() && verdict === 'unverified';
  const canAck = may.acknowledge() && f.state === 'active';
  const canClear = may.clear() && f.state !== 'cleared';
  if (!canVerify && !canDismiss && !canAck && !canClear) return null;

  const act = async (action: 'verify' | 'dismiss' | 'acknowledge' | 'clear', body: object) => {
    setBusy(true);
    setMessage(null);
    try {
      const updated = await post<Finding>(`/api/v1/findings/${f.id}/${action}`, body);
      upsert(updated);
      setMessage({ error: false, text: t('action.done') });
      setNote('');
    } catch (e) {
      const text = e instanceof ApiError && e.status === 403 ? `${t('error.forbidden')}: ${e.message}` : (e as Error).message;
      setMessage({ error: true, text });
    } finally {
      setBusy(false);
    }
  };
  const trimmed = note.trim();
  return (
    <section class="actions" data-actions={f.id}>
      {(canVerify || canDismiss) && (
        <div class="verdict-form">
          <textarea
            name="note"
            rows={2}
            placeholder={t('action.note')}
            value={note}
            onInput={(e) => setNote((e.target as HTMLTextAreaElement).value)}
          />
          {canDismiss && (
            <select name="reason" value={reason} onChange={(e) => setReason((e.target as HTMLSelectElement).value)}>
              <option value="">{t('action.reason')}…</option>
              {DISMISS_REASONS.map((r) => (
                <option key={r} value={r}>
                  {label('reason', r)}
                </option>
              ))}
            </select>
          )}
        </div>
      )}
      <div class="buttons">
        {canVerify && (
          <button
            type="button"
            class="primary"
            data-action="verify"
            disabled={busy}
            onClick={() => act('verify', trimmed ? { note: trimmed } : {})}
          >
            {t('action.verify')}
          </button>
        )}
        {canDismiss && (
          <button
            type="button"
            data-action="dismiss"
            disabled={busy || !reason}
            onClick={() => {
              if (reason === 'other' && !trimmed) {
                setMessage({ error: true, text: t('action.note_required') });
                return;
              }
              void act('dismiss', trimmed ? { reason, note: trimmed } : { reason });
            }}
          >
            {t('action.dismiss')}
          </button>
        )}
        {canAck && (
          <button type="button" data-action="acknowledge" disabled={busy} onClick={() => act('acknowledge', {})}>
            {t('action.acknowledge')}
          </button>
        )}
        {canClear && (
          <button type="button" data-action="clear" disabled={busy} onClick={() => act('clear', {})}>
            {t('action.clear')}
          </button>
        )}
      </div>
      {message && (
        <p class={message.error ? 'error' : 'ok'} role="status" data-action-result={message.error ? 'error' : 'ok'}>
          {message.text}
        </p>
      )}
    </section>
  );
}

/**
 * A verified finding's supervision record: a link to the one it belongs to, or the duty
 * room's button that makes one (the answer is the record).
 */
function RecordLink({ f }: { f: Finding }) {
  const [made, setMade] = useState<number | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setMade(null);
    setError(null);
  }, [f.id]);
  if ((f.verdict ?? 'unverified') !== 'verified') return null;
  const id = f.record_id ?? made;
  if (id) {
    return (
      <p class="record-link">
        {may.record() ? (
          <a href={`#/records/${id}`} data-record-link={id}>
            {t('record.open', { id })}
          </a>
        ) : (
          <span data-record-link={id}>{t('record.open', { id })}</span>
        )}
      </p>
    );
  }
  if (!may.createRecord()) return null;
  return (
    <div class="record-link">
      <button
        type="button"
        data-action="record"
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          setError(null);
          try {
            const r = await recordFromFinding(f.id);
            setMade(r.id);
            upsert({ ...f, record_id: r.id });
          } catch (e) {
            setError(errorText(e));
          } finally {
            setBusy(false);
          }
        }}
      >
        {t('record.create')}
      </button>
      {error && (
        <p class="error" role="status" data-action-result="error">
          {error}
        </p>
      )}
    </div>
  );
}

function Field({ k, v }: { k: Parameters<typeof t>[0]; v: unknown }) {
  if (v === null || v === undefined || v === '') return null;
  return (
    <>
      <dt>{t(k)}</dt>
      <dd>{v as string}</dd>
    </>
  );
}

function Detail({ id }: { id: number }) {
  const known = byId.value.get(id);
  const [fetched, setFetched] = useState<Finding | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setError(null);
    // Kept when the list's filters later leave it out: the detail stays on screen.
    if (known) {
      setFetched(known);
      return;
    }
    let stop = false;
    fetchOne(id).then(
      (f) => {
        if (stop) return;
        if (f) setFetched(f);
        else setError(`#${id}`);
      },
      (e: unknown) => {
        if (!stop) setError(e instanceof Error ? e.message : t('error.network'));
      },
    );
    return () => {
      stop = true;
    };
  }, [id, known]);
  const f = known ?? (fetched?.id === id ? fetched : null);
  if (error) return <p class="error pad">{error}</p>;
  if (!f) return <p class="muted pad">{t('loading')}</p>;
  const site = siteById.value.get(f.site_id);
  const firstMs = toMs(f.first_seen) ?? Date.now();
  const lastMs = toMs(f.last_seen) ?? firstMs;
  const now = Date.now();
  const verdict = f.verdict ?? 'unverified';
  return (
    <article class="detail" data-finding-detail={f.id}>
      <header>
        <Badge kind="severity" value={f.severity} />
        <h2>{f.summary}</h2>
        <button type="button" class="icon" title={t('close')} onClick={() => go('findings')}>
          ×
        </button>
      </header>
      <div class="row-badges">
        <Badge kind="fstate" value={f.state} />
        <Badge kind="verdict" value={verdict} />
      </div>
      <Actions f={f} />
      <RecordLink f={f} />
      <dl class="fields">
        <Field k="field.site" v={site ? `${site.name} (${f.site_id})` : f.site_id} />
        <Field k="field.entity" v={site && `${site.entity_name} ${site.uscc}`} />
        <Field k="field.region" v={regionLabel(f.region || site?.region)} />
        <Field k="field.source" v={`${sourceName(f)} (${f.camera_id ?? f.device_id ?? '—'})`} />
        <Field k="field.rule" v={f.rule} />
        <Field k="field.kind" v={f.kind} />
        <Field k="field.item_code" v={f.item_code} />
        <Field k="field.first_seen" v={dateTime(f.first_seen)} />
        <Field k="field.last_seen" v={dateTime(f.last_seen)} />
        <Field k="field.count" v={f.count} />
        <Field k="field.last_value" v={f.last_value !== null && f.last_value !== undefined ? metricValue(f.last_value, '') : null} />
        <Field k="field.acknowledged_at" v={f.acknowledged_at && dateTime(f.acknowledged_at)} />
        <Field k="field.cleared_at" v={f.cleared_at && dateTime(f.cleared_at)} />
        {verdict !== 'unverified' && (
          <>
            <Field k="field.verdict_by" v={f.verdict_by} />
            <Field k="field.verdict_at" v={f.verdict_at && dateTime(f.verdict_at)} />
            <Field k="field.verdict_reason" v={f.verdict_reason && label('reason', f.verdict_reason)} />
            <Field k="field.verdict_note" v={f.verdict_note} />
          </>
        )}
      </dl>
      <Evidence f={f} />
      {f.device_id && may.readings() && (
        <section class="readings">
          <h3>{t('readings.title')}</h3>
          <ReadingsChart
            device={f.device_id}
            fromMs={firstMs - 30 * 60_000}
            toMs={Math.max(Math.min(now, lastMs + 30 * 60_000), lastMs + 2 * 60_000)}
            markerMs={firstMs}
          />
        </section>
      )}
    </article>
  );
}

export function Findings() {
  useEffect(() => {
    void reload();
  }, []);
  const selected = route.value.view === 'findings' && route.value.id ? Number(route.value.id) : null;
  const list = visible.value;
  return (
    <div class={`findings ${selected ? 'with-detail' : ''}`}>
      <section class="findings-list">
        <div class="findings-head">
          <h2>{t('findings.title')}</h2>
          <span class={`stream ${streamState.value}`} data-stream={streamState.value}>
            {streamState.value === 'live'
              ? `● ${t('findings.live')}`
              : streamState.value === 'reconnecting'
                ? t('findings.reconnecting')
                : t('findings.connecting')}
          </span>
          <span class="muted">{t('findings.count', { n: list.length })}</span>
        </div>
        <Filters />
        {listState.value === 'error' && (
          <p class="error">
            {listError.value}{' '}
            <button type="button" class="link" onClick={() => reload()}>
              {t('retry')}
            </button>
          </p>
        )}
        <ul class="rows" data-findings-list>
          {list.map((f) => (
            <Row key={f.id} f={f} selected={f.id === selected} />
          ))}
        </ul>
        {listState.value === 'loading' && !list.length && <p class="muted pad">{t('loading')}</p>}
        {listState.value === 'idle' && !list.length && <p class="muted pad">{t('findings.empty')}</p>}
        {next.value && (
          <button type="button" class="more" data-role="more" onClick={() => loadMore()}>
            {t('findings.more')}
          </button>
        )}
      </section>
      <aside class="findings-detail">
        {selected ? <Detail id={selected} /> : <p class="muted pad">{t('findings.select')}</p>}
      </aside>
    </div>
  );
}
