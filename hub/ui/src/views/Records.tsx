// Supervision records: the list with its filters and deadline state, and the selected record's
// fields, evidence, timeline and the actions the session may take from its state (the
// department's claim → assign → result with photos → feedback → close in the field, on a
// phone). Polled while shown; an action's answer shows at once.

import { Fragment, type ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError } from '../lib/api';
import { siteById, sites } from '../lib/data';
import { actorName, dateTime, dueIn, errorText, fileSize, fromLocalInput, localInput, regionLabel, shortTime, toMs } from '../lib/format';
import { label, t } from '../lib/i18n';
import { may } from '../lib/permissions';
import {
  ACTIONS,
  act,
  DEADLINE_FILTERS,
  EMPTY_RECORD_FILTER,
  FEEDBACK_KINDS,
  fetchRecord,
  isOverdue,
  knownDepartments,
  knownItems,
  loadCatalogue,
  mayAct,
  moreRecords,
  prepareUpload,
  RECORD_STATES,
  recordFilter,
  records,
  recordsError,
  recordsNext,
  recordsState,
  reloadRecords,
  setRecordFilter,
  uploadAttachment,
  type ActionBody,
  type Attachment,
  type FeedbackKind,
  type RecordAction,
  type RecordFilter,
  type SupervisionRecord,
  type Transition,
} from '../lib/records';
import { go, route } from '../lib/route';
import { pageVisible } from '../lib/visibility';
import { Notices } from './Notices';
import { ReadingsChart } from './ReadingsChart';

const POLL_MS = 15_000;

export function StateBadge({ state }: { state: string }) {
  return (
    <span class={`badge rstate-${state}`} data-badge="rstate">
      {label('rstate', state)}
    </span>
  );
}

export function DeadlineBadge({ r }: { r: SupervisionRecord }) {
  return (
    <span class={`badge deadline-${r.deadline}`} data-badge="deadline">
      {isOverdue(r.deadline) ? '⏰ ' : ''}
      {label('deadline', r.deadline)}
    </span>
  );
}

export function EscalationBadge({ r }: { r: SupervisionRecord }) {
  if (!r.escalation) return null;
  return (
    <span class="badge escalated" data-badge="escalation" title={r.escalation.reason}>
      {t('record.escalated')}
      {r.escalation.level > 1 ? ` ${r.escalation.level}` : ''}
    </span>
  );
}

/** The deadline that matters now: claiming while distributed, closing after; none when closed. */
function dueText(r: SupervisionRecord): string | null {
  if (r.state === 'closed') return null;
  if ((r.state === 'distributed' || r.state === 'new' || r.state === 'returned') && r.claim_due_at) {
    return t('record.to_claim', { due: dueIn(r.claim_due_at) });
  }
  return r.close_due_at ? t('record.to_close', { due: dueIn(r.close_due_at) }) : null;
}

function departmentOf(r: SupervisionRecord): string {
  if (r.department_id) return r.department_id;
  if (r.candidates?.length) return r.candidates.join(', ');
  return t('record.undistributed');
}

// ---- The list --------------------------------------------------------------------------

function FilterSelect(p: { name: keyof RecordFilter; title: string; options: [string, string][] }) {
  const f = recordFilter.value;
  const options = p.options.some(([v]) => v === f[p.name]) || !f[p.name] ? p.options : [...p.options, [f[p.name], f[p.name]] as [string, string]];
  return (
    <label class="filter">
      <span>{p.title}</span>
      <select
        name={p.name}
        value={f[p.name]}
        onChange={(e) => setRecordFilter({ ...f, [p.name]: (e.target as HTMLSelectElement).value })}
      >
        <option value="">{t('all')}</option>
        {options.map(([v, l]) => (
          <option key={v} value={v}>
            {l}
          </option>
        ))}
      </select>
    </label>
  );
}

function RecordFilters() {
  const items = [...knownItems.value.entries()].sort(([a], [b]) => a.localeCompare(b));
  return (
    <div class="filters" data-filters="records">
      <FilterSelect name="state" title={t('filter.state')} options={RECORD_STATES.map((s) => [s, label('rstate', s)])} />
      <FilterSelect
        name="deadline"
        title={t('filter.deadline')}
        options={DEADLINE_FILTERS.map((d) => [d, label('deadline', d)])}
      />
      <FilterSelect
        name="item_code"
        title={t('filter.item')}
        options={items.map(([code, name]) => [code, name ? `${name} (${code})` : code])}
      />
      <FilterSelect name="site" title={t('filter.site')} options={sites.value.map((s) => [s.id, s.name])} />
      <FilterSelect
        name="department"
        title={t('filter.department')}
        options={[...knownDepartments.value].sort().map((d) => [d, d])}
      />
      <button type="button" class="link" data-role="reset-filters" onClick={() => setRecordFilter({ ...EMPTY_RECORD_FILTER })}>
        {t('filter.reset')}
      </button>
    </div>
  );
}

function RecordRow({ r, selected }: { r: SupervisionRecord; selected: boolean }) {
  const overdue = isOverdue(r.deadline);
  const site = r.site_name || siteById.value.get(r.site_id)?.name || r.site_id;
  const due = dueText(r);
  return (
    <li
      class={`row record-row sev-${r.severity} ${selected ? 'selected' : ''} ${overdue ? 'overdue' : ''} ${r.escalation ? 'is-escalated' : ''} rstate-row-${r.state}`}
      data-record={r.id}
      data-state={r.state}
      data-deadline={r.deadline}
      data-escalated={r.escalation ? 'true' : 'false'}
      onClick={() => go('records', r.id)}
      tabIndex={0}
      onKeyDown={(e) => e.key === 'Enter' && go('records', r.id)}
    >
      <span class="rec-sev">
        <span class={`badge severity-${r.severity}`} data-badge="severity">
          {label('severity', r.severity)}
        </span>
      </span>
      <span class="rec-number" title={dateTime(r.created_at)}>
        {r.number}
      </span>
      <span class="rec-item">
        {r.item_name || r.item_code}
        {r.occurrences > 1 && <span class="count">×{r.occurrences}</span>}
      </span>
      <span class="rec-where muted">
        {r.entity?.name || '—'} · {site}
      </span>
      <span class="rec-dept muted">{departmentOf(r)}</span>
      <span class={`rec-due ${overdue ? 'crit' : 'muted'}`}>{due ?? shortTime(r.updated_at)}</span>
      <span class="rec-badges">
        <StateBadge state={r.state} />
        <DeadlineBadge r={r} />
        <EscalationBadge r={r} />
      </span>
    </li>
  );
}

// ---- The detail: actions ---------------------------------------------------------------

/** Chosen photos with a preview each (object URLs, revoked when they change or go). */
function PhotoInput(p: { files: File[]; onChange: (f: File[]) => void; accept: string; capture?: boolean }) {
  const [urls, setUrls] = useState<string[]>([]);
  useEffect(() => {
    const u = p.files.map((f) => (f.type.startsWith('image/') ? URL.createObjectURL(f) : ''));
    setUrls(u);
    return () => u.forEach((x) => x && URL.revokeObjectURL(x));
  }, [p.files]);
  return (
    <label class="field">
      <span>{t('record.photo')}</span>
      <input
        type="file"
        name="photo"
        accept={p.accept}
        {...(p.capture ? { capture: 'environment' } : {})}
        multiple
        onChange={(e) => p.onChange([...((e.target as HTMLInputElement).files ?? [])])}
      />
      {p.files.length > 0 && (
        <span class="previews">
          {p.files.map((f, i) =>
            urls[i] ? (
              <img key={i} class="preview" src={urls[i]} alt={f.name} data-preview={f.name} />
            ) : (
              <span key={i} class="tag">
                {f.name} {fileSize(f.size)}
              </span>
            ),
          )}
        </span>
      )}
    </label>
  );
}

interface Inspector {
  name: string;
  certificate: string;
}

function ActionForm(p: {
  r: SupervisionRecord;
  action: RecordAction;
  onDone: (r: SupervisionRecord) => void;
  onError: (text: string) => void;
  /** The hub answered 409: someone else's step came first; show the record as stored. */
  onStale: () => void;
  onCancel: () => void;
}) {
  const { r, action } = p;
  const now = localInput(Date.now());
  const [note, setNote] = useState('');
  const [assignee, setAssignee] = useState(r.assignee ?? '');
  const [result, setResult] = useState('');
  const [files, setFiles] = useState<File[]>([]);
  const [kind, setKind] = useState<FeedbackKind>('inspection');
  const [outcome, setOutcome] = useState('');
  const [inspectedAt, setInspectedAt] = useState(now);
  const [inspectors, setInspectors] = useState<Inspector[]>([{ name: '', certificate: '' }]);
  const [reportedAt, setReportedAt] = useState(now);
  const [reporter, setReporter] = useState('');
  const [departments, setDepartments] = useState((r.candidates ?? []).join(', '));
  const [busy, setBusy] = useState<string | null>(null);

  const noteRequired = action === 'reopen' || action === 'return';
  const mayUpload = may.upload();
  const trimmed = note.trim();
  const withNote = <T extends object>(b: T): T & { note?: string } => (trimmed ? { ...b, note: trimmed } : b);

  const upload = async (): Promise<(number | string)[] | undefined> => {
    if (!files.length) return undefined;
    const ids: (number | string)[] = [];
    for (const [i, f] of files.entries()) {
      setBusy(t('record.uploading', { n: i + 1, of: files.length }));
      const a: Attachment = await uploadAttachment(r.id, await prepareUpload(f));
      ids.push(a.id);
    }
    return ids;
  };

  const body = async (): Promise<ActionBody | string> => {
    switch (action) {
      case 'claim':
      case 'close':
        return withNote({ action });
      case 'reopen':
      case 'return':
        return trimmed ? { action, note: trimmed } : t('record.note_required');
      case 'assign':
        return assignee.trim() ? withNote({ action, assignee: assignee.trim() }) : t('record.assignee_required');
      case 'distribute': {
        const ids = departments.split(/[\s,，;；]+/).filter(Boolean);
        return ids.length ? withNote({ action, departments: ids }) : t('record.departments_required');
      }
      case 'result': {
        if (!result.trim()) return t('record.result_required');
        const attachments = await upload();
        return withNote({ action, result: result.trim(), ...(attachments ? { attachments } : {}) });
      }
      case 'feedback': {
        const people = inspectors
          .map((x) => ({ name: x.name.trim(), certificate: x.certificate.trim() }))
          .filter((x) => x.name || x.certificate);
        const inspected = fromLocalInput(inspectedAt);
        const reported = fromLocalInput(reportedAt);
        if (!outcome.trim() || !inspected || !reported || !reporter.trim() || !people.length) {
          return t('record.feedback_required');
        }
        if (people.some((x) => !x.name || !x.certificate)) return t('record.inspector_required');
        const attachments = await upload();
        return withNote({
          action,
          kind,
          outcome: outcome.trim(),
          inspected_at: inspected,
          inspectors: people,
          reported_at: reported,
          reporter: reporter.trim(),
          ...(attachments ? { attachments } : {}),
        });
      }
    }
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    if (busy) return;
    setBusy(t('record.sending'));
    try {
      const b = await body();
      if (typeof b === 'string') {
        p.onError(b);
        return;
      }
      setBusy(t('record.sending'));
      p.onDone(await act(r.id, b));
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        p.onError(`${t('record.conflict')} ${errorText(err)}`);
        p.onStale();
      } else {
        p.onError(errorText(err));
      }
    } finally {
      setBusy(null);
    }
  };

  // Assignees named before on this record, to pick again.
  const named = [...new Set((r.timeline ?? []).filter((x) => x.action === 'assign').map((x) => dataField(x.data, 'assignee')).filter(Boolean))];
  const text = (name: string, value: string, set: (v: string) => void, title: string, opts: { type?: 'text' | 'datetime-local'; list?: string; required?: boolean } = {}) => (
    <label class="field">
      <span>{title}</span>
      <input
        type={opts.type ?? 'text'}
        name={name}
        value={value}
        list={opts.list}
        required={opts.required}
        onInput={(e) => set((e.target as HTMLInputElement).value)}
      />
    </label>
  );
  const area = (name: string, value: string, set: (v: string) => void, title: string, required = false) => (
    <label class="field">
      <span>{title}</span>
      <textarea name={name} rows={3} value={value} required={required} onInput={(e) => set((e.target as HTMLTextAreaElement).value)} />
    </label>
  );

  return (
    <form class="record-form" data-record-form={action} onSubmit={submit} noValidate>
      {action === 'distribute' &&
        text('departments', departments, setDepartments, t('record.departments'), { required: true })}
      {action === 'assign' && (
        <>
          {text('assignee', assignee, setAssignee, t('record.assignee'), { list: 'assignees', required: true })}
          <datalist id="assignees">
            {named.map((n) => (
              <option key={n} value={n} />
            ))}
          </datalist>
        </>
      )}
      {action === 'result' && (
        <>
          {area('result', result, setResult, t('record.result'), true)}
          {mayUpload && <PhotoInput files={files} onChange={setFiles} accept="image/*" capture />}
        </>
      )}
      {action === 'feedback' && (
        <>
          <label class="field">
            <span>{t('record.kind')}</span>
            <select name="kind" value={kind} onChange={(e) => setKind((e.target as HTMLSelectElement).value as FeedbackKind)}>
              {FEEDBACK_KINDS.map((k) => (
                <option key={k} value={k}>
                  {label('fbkind', k)}
                </option>
              ))}
            </select>
          </label>
          {area('outcome', outcome, setOutcome, t('record.outcome'), true)}
          {text('inspected_at', inspectedAt, setInspectedAt, t('record.inspected_at'), { type: 'datetime-local', required: true })}
          <fieldset class="inspectors">
            <legend>{t('record.inspectors')}</legend>
            {inspectors.map((x, i) => (
              <div class="inspector" key={i}>
                {text('inspector_name', x.name, (v) => setInspectors(inspectors.map((y, j) => (j === i ? { ...y, name: v } : y))), t('record.inspector_name'), { required: true })}
                {text(
                  'inspector_certificate',
                  x.certificate,
                  (v) => setInspectors(inspectors.map((y, j) => (j === i ? { ...y, certificate: v } : y))),
                  t('record.inspector_certificate'),
                  { required: true },
                )}
                {inspectors.length > 1 && (
                  <button type="button" class="link" onClick={() => setInspectors(inspectors.filter((_, j) => j !== i))}>
                    {t('record.remove_inspector')}
                  </button>
                )}
              </div>
            ))}
            <button type="button" class="link" data-role="add-inspector" onClick={() => setInspectors([...inspectors, { name: '', certificate: '' }])}>
              + {t('record.add_inspector')}
            </button>
          </fieldset>
          {text('reported_at', reportedAt, setReportedAt, t('record.reported_at'), { type: 'datetime-local', required: true })}
          {text('reporter', reporter, setReporter, t('record.reporter'), { required: true })}
          {mayUpload && <PhotoInput files={files} onChange={setFiles} accept="image/*,application/pdf" />}
        </>
      )}
      {area('note', note, setNote, noteRequired ? t('record.note_why') : t('action.note'), noteRequired)}
      <div class="buttons">
        <button type="submit" class="primary" data-role="submit" disabled={!!busy}>
          {busy ?? label('raction', action)}
        </button>
        <button type="button" data-role="cancel" disabled={!!busy} onClick={p.onCancel}>
          {t('cancel')}
        </button>
      </div>
    </form>
  );
}

function RecordActions({
  r,
  onChanged,
  onStale,
}: {
  r: SupervisionRecord;
  onChanged: (r: SupervisionRecord) => void;
  onStale: () => void;
}) {
  const [open, setOpen] = useState<RecordAction | null>(null);
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);
  useEffect(() => {
    setOpen(null);
    setMessage(null);
  }, [r.id]);
  const allowed = ACTIONS.filter((a) => mayAct(r, a));
  // Another person's step (seen on the poll) can take the open form's action away.
  useEffect(() => {
    if (open && !allowed.includes(open)) setOpen(null);
  }, [r.state]);
  if (!allowed.length && !message) return null;
  return (
    <section class="actions record-actions" data-actions={r.id}>
      {allowed.length > 0 && (
        <div class="buttons">
          {allowed.map((a) => (
            <button
              type="button"
              key={a}
              class={open === a ? 'active' : a === allowed[0] ? 'primary' : ''}
              data-record-action={a}
              aria-expanded={open === a}
              onClick={() => {
                setMessage(null);
                setOpen(open === a ? null : a);
              }}
            >
              {label('raction', a)}
            </button>
          ))}
        </div>
      )}
      {open && (
        <ActionForm
          key={`${r.id}:${open}`}
          r={r}
          action={open}
          onCancel={() => setOpen(null)}
          onError={(text) => setMessage({ error: true, text })}
          onStale={onStale}
          onDone={(updated) => {
            setMessage({ error: false, text: t('record.done', { action: label('raction', open), state: label('rstate', updated.state) }) });
            setOpen(null);
            onChanged(updated);
          }}
        />
      )}
      {message && (
        <p class={message.error ? 'error' : 'ok'} role="status" data-action-result={message.error ? 'error' : 'ok'}>
          {message.text}
        </p>
      )}
    </section>
  );
}

// ---- The detail: fields, evidence, timeline ----------------------------------------------

function dataField(data: unknown, key: string): string {
  if (data && typeof data === 'object' && key in data) {
    const v = (data as Record<string, unknown>)[key];
    return typeof v === 'string' ? v : '';
  }
  return '';
}

const isTime = (k: string) => k.endsWith('_at') || k === 'at';

/** An open JSON value (a result, a feedback, a transition's data) as labelled fields. */
function Value({ v }: { v: unknown }) {
  if (v === null || v === undefined || v === '') return <>—</>;
  if (typeof v !== 'object') return <>{String(v)}</>;
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x !== 'object' || x === null)) return <>{v.join(', ')}</>;
    return (
      <ul class="plain">
        {v.map((x, i) => (
          <li key={i}>
            <Value v={x} />
          </li>
        ))}
      </ul>
    );
  }
  const entries = Object.entries(v as Record<string, unknown>).filter(([k, x]) => x !== null && x !== undefined && k !== 'attachments');
  if (entries.every(([, x]) => typeof x !== 'object')) {
    // A flat object (an inspector) on one line.
    if (entries.length <= 2 && !entries.some(([k]) => isTime(k))) return <>{entries.map(([, x]) => String(x)).join(' · ')}</>;
  }
  return (
    <dl class="fields inner">
      {entries.map(([k, x]) => (
        <Fragment key={k}>
          <dt>{label('data', k)}</dt>
          <dd>
            {typeof x === 'string' && isTime(k) && toMs(x) !== null ? (
              dateTime(x)
            ) : typeof x === 'string' && k === 'kind' ? (
              label('fbkind', x)
            ) : (
              <Value v={x} />
            )}
          </dd>
        </Fragment>
      ))}
    </dl>
  );
}

function Attachments({ items }: { items: Attachment[] }) {
  if (!items?.length) return null;
  return (
    <div class="attachments">
      {items.map((a) =>
        a.content_type.startsWith('image/') ? (
          <a key={a.id} href={a.url} target="_blank" rel="noopener" data-attachment={a.id}>
            <img class="thumb" src={a.url} alt={a.name} loading="lazy" />
          </a>
        ) : (
          <a key={a.id} href={a.url} target="_blank" rel="noopener" class="tag" data-attachment={a.id}>
            {a.name} ({fileSize(a.size)})
          </a>
        ),
      )}
    </div>
  );
}

function Timeline({ items }: { items: Transition[] }) {
  if (!items.length) return null;
  return (
    <section class="timeline-section">
      <h3>{t('record.timeline')}</h3>
      <ol class="timeline" data-timeline>
        {items.map((x) => (
          <li key={x.id} class={`tl tl-${x.action}`} data-timeline-action={x.action} data-actor={x.actor} data-at={x.at}>
            <div class="tl-head">
              <strong>{label('raction', x.action)}</strong>
              {(x.from || x.to) && (
                <span class="tl-states">
                  {x.from ? label('rstate', x.from) : '—'} → {x.to ? label('rstate', x.to) : '—'}
                </span>
              )}
            </div>
            <div class="tl-meta muted small">
              <span data-role="actor" title={x.actor}>
                {actorName(x.actor)}
              </span>{' '}
              · <time dateTime={x.at} data-role="at">{dateTime(x.at)}</time>
            </div>
            {x.note && <p class="tl-note">{x.note}</p>}
            {x.data !== null && x.data !== undefined && typeof x.data === 'object' && Object.keys(x.data).length > 0 && (
              <div class="tl-data">
                <Value v={x.data} />
              </div>
            )}
            <Attachments items={x.attachments} />
          </li>
        ))}
      </ol>
    </section>
  );
}

function Field({ k, v }: { k: Parameters<typeof t>[0]; v: ComponentChildren }) {
  if (v === null || v === undefined || v === '') return null;
  return (
    <>
      <dt>{t(k)}</dt>
      <dd>{v}</dd>
    </>
  );
}

function Evidence({ r }: { r: SupervisionRecord }) {
  const ev = r.evidence;
  if (!ev) return null;
  const images = ev.images ?? [];
  const readings = ev.readings;
  const fromMs = toMs(readings?.from);
  const toMsv = toMs(readings?.to);
  return (
    <section class="evidence record-evidence">
      {images.length > 0 && (
        <>
          <h3>{t('evidence.title')}</h3>
          <div class="evidence-grid">
            {images.map((im, i) => (
              <figure key={im.url}>
                <a href={im.url} target="_blank" rel="noopener">
                  <img class="evidence-img" src={im.url} alt={`${r.summary} ${i + 1}`} data-record-evidence={i} loading="lazy" />
                </a>
                <figcaption class="muted small">{dateTime(im.captured_at)}</figcaption>
              </figure>
            ))}
          </div>
        </>
      )}
      {readings && (
        <>
          <h3>
            {t('readings.title')}{' '}
            <a class="small" href={`#/sensors/${encodeURIComponent(readings.device_id)}`} data-role="readings-link">
              {readings.device_id}
            </a>
          </h3>
          {may.readings() && fromMs !== null && toMsv !== null ? (
            <ReadingsChart device={readings.device_id} fromMs={fromMs} toMs={toMsv} markerMs={toMs(r.first_seen)} height={180} />
          ) : (
            <p class="muted small">
              {dateTime(readings.from)} – {dateTime(readings.to)}
            </p>
          )}
        </>
      )}
      {ev.clip && (ev.clip.from || ev.clip.to) && (
        <p class="muted small" data-role="clip-window">
          {t('record.clip', { camera: ev.clip.camera_id ?? '—', from: dateTime(ev.clip.from), to: dateTime(ev.clip.to) })}
        </p>
      )}
    </section>
  );
}

function Detail({ id }: { id: number }) {
  const [r, setR] = useState<SupervisionRecord | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stop = false;
    setError(null);
    const listed = records.value.find((x) => x.id === id);
    setR(listed ? { ...listed, timeline: undefined } : null);
    const load = () =>
      fetchRecord(id).then(
        (x) => {
          if (!stop) {
            setR(x);
            setError(null);
          }
        },
        (e: unknown) => {
          if (!stop) setError(e instanceof ApiError && e.status === 404 ? t('record.not_found', { id }) : errorText(e));
        },
      );
    void load();
    const timer = window.setInterval(() => {
      if (document.visibilityState === 'visible') void load();
    }, POLL_MS);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [id]);

  if (error && !r) return <p class="error pad" data-role="record-error">{error}</p>;
  if (!r) return <p class="muted pad">{t('loading')}</p>;
  const e = r.entity;
  const site = siteById.value.get(r.site_id);
  const overdue = isOverdue(r.deadline);
  return (
    <article class="detail record-detail" data-record-detail={r.id} data-state={r.state} data-deadline={r.deadline}>
      <header>
        <span class={`badge severity-${r.severity}`}>{label('severity', r.severity)}</span>
        <h2>{r.item_name || r.item_code}</h2>
        <button type="button" class="icon" title={t('close')} data-role="close-detail" onClick={() => go('records')}>
          ×
        </button>
      </header>
      <div class="row-badges">
        <span class="rec-number">{r.number}</span>
        <StateBadge state={r.state} />
        <DeadlineBadge r={r} />
        <EscalationBadge r={r} />
      </div>
      {r.summary && <p class="summary">{r.summary}</p>}
      {error && <p class="error small">{error}</p>}
      <RecordActions
        r={r}
        onChanged={setR}
        onStale={() => {
          void fetchRecord(r.id).then(setR, () => undefined);
          void reloadRecords({ keep: true });
        }}
      />
      <dl class="fields">
        <Field k="record.number" v={r.number} />
        <Field k="field.item_code" v={`${r.item_code}${r.item_name ? ` ${r.item_name}` : ''}`} />
        <Field k="field.entity" v={e?.name} />
        <Field k="record.uscc" v={e?.uscc && <code data-role="uscc">{e.uscc}</code>} />
        <Field k="record.address" v={e?.address} />
        <Field k="record.risk_grade" v={e?.risk_grade} />
        <Field k="field.site" v={`${r.site_name || site?.name || r.site_id} (${r.site_id})`} />
        <Field k="field.region" v={regionLabel(r.region)} />
        <Field k="filter.industry" v={label('industry', r.industry)} />
        <Field k="record.department" v={r.department_id} />
        <Field k="record.candidates" v={r.candidates?.length ? r.candidates.join(', ') : t('record.undistributed')} />
        <Field k="record.assignee" v={r.assignee} />
        <Field k="field.first_seen" v={dateTime(r.first_seen)} />
        <Field k="field.last_seen" v={dateTime(r.last_seen)} />
        <Field k="record.occurrences" v={r.occurrences} />
        <Field
          k="record.findings"
          v={
            r.finding_ids?.length ? (
              <span class="links">
                {r.finding_ids.map((f) => (
                  <a key={f} href={`#/findings/${f}`} data-finding-link={f}>
                    #{f}
                  </a>
                ))}
              </span>
            ) : null
          }
        />
        <Field
          k="record.claim_due"
          v={r.claim_due_at && `${dateTime(r.claim_due_at)}${r.state === 'distributed' ? ` (${dueIn(r.claim_due_at)})` : ''}`}
        />
        <Field
          k="record.close_due"
          v={
            r.close_due_at && (
              <span class={overdue ? 'crit' : ''}>
                {dateTime(r.close_due_at)}
                {r.state !== 'closed' ? ` (${dueIn(r.close_due_at)})` : ''}
              </span>
            )
          }
        />
        <Field
          k="record.escalation"
          v={
            r.escalation && (
              <span class="crit">
                {t('record.escalation_text', { level: r.escalation.level, to: r.escalation.to, at: dateTime(r.escalation.at) })}
                {r.escalation.reason ? `: ${r.escalation.reason}` : ''}
              </span>
            )
          }
        />
        <Field k="record.closed_at" v={r.closed_at && dateTime(r.closed_at)} />
        <Field k="record.created" v={`${dateTime(r.created_at)} · ${actorName(r.created_by)}`} />
      </dl>
      {r.result !== null && r.result !== undefined && (
        <section class="record-result" data-role="record-result">
          <h3>{t('record.result')}</h3>
          <Value v={r.result} />
        </section>
      )}
      {r.feedback !== null && r.feedback !== undefined && (
        <section class="record-feedback" data-role="record-feedback">
          <h3>{t('record.feedback')}</h3>
          <Value v={r.feedback} />
        </section>
      )}
      <Evidence r={r} />
      <Timeline items={r.timeline ?? []} />
    </article>
  );
}

export function Records() {
  useEffect(() => {
    void reloadRecords();
    void loadCatalogue();
  }, []);
  useEffect(() => {
    if (!pageVisible.value) return;
    const timer = window.setInterval(() => void reloadRecords({ keep: true }), POLL_MS);
    return () => clearInterval(timer);
  }, [pageVisible.value]);
  const selected = route.value.view === 'records' && route.value.id ? Number(route.value.id) : null;
  const list = records.value;
  const overdue = list.filter((r) => isOverdue(r.deadline)).length;
  return (
    <div class={`records ${selected ? 'with-detail' : ''}`}>
      <section class="records-list">
        <div class="findings-head records-head">
          <h2>{t('records.title')}</h2>
          <span class="muted">{t('findings.count', { n: list.length })}</span>
          {overdue > 0 && <span class="crit small" data-role="overdue-count">⏰ {t('records.overdue', { n: overdue })}</span>}
          <span class="spacer" />
          <Notices />
        </div>
        <RecordFilters />
        {recordsState.value === 'error' && (
          <p class="error">
            {recordsError.value}{' '}
            <button type="button" class="link" onClick={() => reloadRecords()}>
              {t('retry')}
            </button>
          </p>
        )}
        <ul class="rows record-rows" data-records-list data-list-state={recordsState.value}>
          {list.map((r) => (
            <RecordRow key={r.id} r={r} selected={r.id === selected} />
          ))}
        </ul>
        {recordsState.value === 'loading' && !list.length && <p class="muted pad">{t('loading')}</p>}
        {recordsState.value === 'idle' && !list.length && <p class="muted pad">{t('records.empty')}</p>}
        {recordsNext.value && (
          <button type="button" class="more" data-role="more" onClick={() => moreRecords()}>
            {t('findings.more')}
          </button>
        )}
      </section>
      <aside class="records-detail">
        {selected ? <Detail key={selected} id={selected} /> : <p class="muted pad">{t('records.select')}</p>}
      </aside>
    </div>
  );
}
