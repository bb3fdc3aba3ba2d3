// The department's push subscriptions (Standard Webhooks, or MQTT on the hub's broker): each
// with its state (enabled, or disabled and why; failing since; last success) and counts; a new
// one (its secret shown once); rotating, enabling again, deleting; and one subscription's
// deliveries with their attempts, replayed one by one or over a time range.

import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { session } from '../lib/api';
import { sites } from '../lib/data';
import { dateTime, errorText, fromLocalInput, localInput } from '../lib/format';
import { label, t } from '../lib/i18n';
import { may } from '../lib/permissions';
import {
  createSubscription,
  deleteSubscription,
  DELIVERY_STATES,
  EVENT_TYPES,
  listDeliveries,
  listSubscriptions,
  replay,
  rotateSubscription,
  updateSubscription,
  type Delivery,
  type Subscription,
  type SubscriptionFilters,
  type Transport,
} from '../lib/records';
import { SEVERITIES } from '../lib/types';
import { go, route } from '../lib/route';
import { pageVisible } from '../lib/visibility';
import { Notices } from './Notices';

const LIST_POLL_MS = 10_000;
const DELIVERIES_POLL_MS = 4_000;

type Message = { error: boolean; text: string } | null;

function Result({ m }: { m: Message }) {
  if (!m) return null;
  return (
    <p class={m.error ? 'error' : 'ok'} role="status" data-action-result={m.error ? 'error' : 'ok'}>
      {m.text}
    </p>
  );
}

/** A new secret, shown once: copied now or never seen again. */
function SecretBox({ secret, onDismiss }: { secret: string; onDismiss: () => void }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(secret);
      setCopied(true);
    } catch {
      // No clipboard outside a secure context: the text is selected for Ctrl+C instead.
      const el = document.querySelector('[data-role=secret]');
      if (el) window.getSelection()?.selectAllChildren(el);
    }
  };
  return (
    <div class="secret-box" role="alert">
      <strong>{t('subs.secret_title')}</strong>
      <p class="small">{t('subs.secret_hint')}</p>
      <code class="secret" data-role="secret">
        {secret}
      </code>
      <div class="buttons">
        <button type="button" class="primary" data-role="copy-secret" onClick={copy}>
          {copied ? t('subs.copied') : t('subs.copy')}
        </button>
        <button type="button" data-role="dismiss-secret" onClick={onDismiss}>
          {t('subs.secret_done')}
        </button>
      </div>
    </div>
  );
}

const splitList = (v: string) => v.split(/[\s,，;；]+/).filter(Boolean);

function Checks(p: { name: string; options: [string, string][]; value: string[]; onChange: (v: string[]) => void }) {
  return (
    <span class="checks">
      {p.options.map(([v, l]) => (
        <label key={v} class="check">
          <input
            type="checkbox"
            name={p.name}
            value={v}
            checked={p.value.includes(v)}
            onChange={(e) =>
              p.onChange((e.target as HTMLInputElement).checked ? [...p.value, v] : p.value.filter((x) => x !== v))
            }
          />
          {l}
        </label>
      ))}
    </span>
  );
}

function NewSubscription({ onCreated, onCancel }: { onCreated: (s: Subscription) => void; onCancel: () => void }) {
  const admin = session.value?.roles.includes('admin') ?? false;
  const [name, setName] = useState('');
  const [url, setUrl] = useState('');
  const [transport, setTransport] = useState<Transport>('webhook');
  const [department, setDepartment] = useState('');
  const [regions, setRegions] = useState('');
  const [itemCodes, setItemCodes] = useState('');
  const [industries, setIndustries] = useState<string[]>([]);
  const [severities, setSeverities] = useState<string[]>([]);
  const [eventTypes, setEventTypes] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<Message>(null);
  const knownIndustries = [
    ...new Set([...(session.value?.department?.industries ?? []), ...sites.value.map((s) => s.industry)]),
  ].sort();

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!name.trim() || (transport === 'webhook' && !url.trim()) || (admin && !department.trim())) {
      setMessage({ error: true, text: t('subs.required') });
      return;
    }
    const filters: SubscriptionFilters = {
      regions: splitList(regions),
      industries,
      item_codes: splitList(itemCodes),
      severities,
      event_types: eventTypes,
    };
    setBusy(true);
    setMessage(null);
    try {
      const s = await createSubscription({
        name: name.trim(),
        ...(transport === 'webhook' ? { url: url.trim() } : {}),
        transport,
        filters,
        ...(admin ? { department_id: department.trim() } : {}),
      });
      onCreated(s);
    } catch (err) {
      setMessage({ error: true, text: errorText(err) });
    } finally {
      setBusy(false);
    }
  };
  const input = (n: string, v: string, set: (x: string) => void, title: string, placeholder = '') => (
    <label class="field">
      <span>{title}</span>
      <input
        type="text"
        name={n}
        value={v}
        placeholder={placeholder}
        inputMode={n === 'url' ? 'url' : undefined}
        autoCapitalize="off"
        spellcheck={false}
        onInput={(e) => set((e.target as HTMLInputElement).value)}
      />
    </label>
  );
  return (
    <form class="panel sub-form" data-form="subscription" onSubmit={submit} noValidate>
      <h3>{t('subs.new')}</h3>
      {input('name', name, setName, t('subs.name'))}
      <label class="field">
        <span>{t('subs.transport')}</span>
        <select name="transport" value={transport} onChange={(e) => setTransport((e.target as HTMLSelectElement).value as Transport)}>
          <option value="webhook">{label('transport', 'webhook')}</option>
          <option value="mqtt">{label('transport', 'mqtt')}</option>
        </select>
      </label>
      {transport === 'webhook' ? (
        input('url', url, setUrl, t('subs.url'), 'https://10.1.2.3/hooks/supervision')
      ) : (
        <p class="muted small">{t('subs.mqtt_hint', { user: `department:${department || session.value?.department?.id || '…'}` })}</p>
      )}
      {admin && input('department_id', department, setDepartment, t('subs.department'))}
      <fieldset class="sub-filters">
        <legend>{t('subs.filters')}</legend>
        <p class="muted small">{t('subs.filters_hint')}</p>
        {input('regions', regions, setRegions, t('subs.regions'), '610100')}
        <div class="field">
          <span>{t('filter.industry')}</span>
          <Checks name="industries" options={knownIndustries.map((i) => [i, label('industry', i)])} value={industries} onChange={setIndustries} />
        </div>
        {input('item_codes', itemCodes, setItemCodes, t('subs.item_codes'))}
        <div class="field">
          <span>{t('filter.severity')}</span>
          <Checks name="severities" options={SEVERITIES.map((s) => [s, label('severity', s)])} value={severities} onChange={setSeverities} />
        </div>
        <div class="field">
          <span>{t('subs.event_types')}</span>
          <Checks name="event_types" options={EVENT_TYPES.map((e) => [e, label('event', e)])} value={eventTypes} onChange={setEventTypes} />
        </div>
      </fieldset>
      <div class="buttons">
        <button type="submit" class="primary" data-role="submit" disabled={busy}>
          {t('subs.create')}
        </button>
        <button type="button" data-role="cancel" disabled={busy} onClick={onCancel}>
          {t('cancel')}
        </button>
      </div>
      <Result m={message} />
    </form>
  );
}

function Status({ s }: { s: Subscription }) {
  if (!s.enabled) {
    return (
      <span class="badge sub-disabled" data-badge="enabled" title={s.disabled_reason ?? ''}>
        {t('subs.disabled')}
        {s.disabled_reason ? `: ${s.disabled_reason}` : ''}
      </span>
    );
  }
  if (s.failing_since) {
    return (
      <span class="badge sub-failing" data-badge="enabled">
        {t('subs.failing_since', { t: dateTime(s.failing_since) })}
      </span>
    );
  }
  return (
    <span class="badge sub-enabled" data-badge="enabled">
      {t('subs.enabled')}
    </span>
  );
}

function Counts({ s }: { s: Subscription }) {
  return (
    <span class="sub-counts small">
      <span data-count="pending">{t('subs.pending', { n: s.pending })}</span>
      <span data-count="delivered" class="ok-text">
        {t('subs.delivered', { n: s.delivered })}
      </span>
      <span data-count="failed" class={s.failed ? 'error' : 'muted'}>
        {t('subs.failed', { n: s.failed })}
      </span>
    </span>
  );
}

function Card({ s, selected }: { s: Subscription; selected: boolean }) {
  return (
    <li
      class={`card sub-card ${selected ? 'selected' : ''} ${s.enabled ? '' : 'offline'}`}
      data-subscription={s.id}
      data-enabled={s.enabled ? 'true' : 'false'}
      onClick={() => go('subscriptions', s.id)}
      tabIndex={0}
      onKeyDown={(e) => e.key === 'Enter' && go('subscriptions', s.id)}
    >
      <div class="card-head">
        <span class="card-title">{s.name}</span>
        <Status s={s} />
      </div>
      <div class="muted small ellipsis">
        {label('transport', s.transport)} · {s.mqtt ? s.mqtt.topic : s.url}
      </div>
      <Counts s={s} />
      <div class="muted small">
        {t('subs.last_success')}: {s.last_success_at ? dateTime(s.last_success_at) : t('subs.never')}
      </div>
    </li>
  );
}

function FiltersText({ f }: { f: SubscriptionFilters }) {
  const parts: [string, string[]][] = [
    [t('subs.regions'), f.regions],
    [t('filter.industry'), f.industries.map((i) => label('industry', i))],
    [t('subs.item_codes'), f.item_codes],
    [t('filter.severity'), f.severities.map((s) => label('severity', s))],
    [t('subs.event_types'), f.event_types],
  ];
  const set = parts.filter(([, v]) => v?.length);
  if (!set.length) return <span class="muted">{t('subs.everything')}</span>;
  return (
    <span>
      {set.map(([k, v]) => (
        <span key={k} class="tag">
          {k}: {v.join(', ')}
        </span>
      ))}
    </span>
  );
}

/** An attempt's answer: the HTTP status, or an MQTT subscriber's PUBACK (which has none). */
function answer(s: Subscription, status: number | null | undefined, ok: boolean): string {
  if (status !== null && status !== undefined) return String(status);
  return s.transport === 'mqtt' && ok ? 'PUBACK' : '—';
}

function Deliveries({ s }: { s: Subscription }) {
  const [items, setItems] = useState<Delivery[] | null>(null);
  const [state, setState] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [message, setMessage] = useState<Message>(null);
  const [from, setFrom] = useState(localInput(Date.now() - 3_600_000));
  const [to, setTo] = useState(localInput(Date.now() + 60_000));
  const [busy, setBusy] = useState(false);
  const [tick, setTick] = useState(0);
  const [logs, setLogs] = useState<Set<number>>(new Set());
  const toggleLog = (id: number) =>
    setLogs((l) => {
      const n = new Set(l);
      if (n.has(id)) n.delete(id);
      else n.add(id);
      return n;
    });
  useEffect(() => {
    if (!may.deliveries() || !pageVisible.value) return;
    let stop = false;
    const load = () =>
      listDeliveries(s.id, { state }).then(
        (d) => {
          if (!stop) {
            setItems(d);
            setError(null);
          }
        },
        (e: unknown) => !stop && setError(errorText(e)),
      );
    void load();
    const timer = window.setInterval(load, DELIVERIES_POLL_MS);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [s.id, state, tick, pageVisible.value]);
  if (!may.deliveries()) return null;

  const again = async (what: { event_id: string } | { from: string; to: string }) => {
    setBusy(true);
    setMessage(null);
    try {
      const r = await replay(s.id, what);
      setMessage({ error: false, text: t('subs.queued', { n: r.queued }) });
      setTick((x) => x + 1);
    } catch (e) {
      setMessage({ error: true, text: errorText(e) });
    } finally {
      setBusy(false);
    }
  };
  const replayRange = (e: Event) => {
    e.preventDefault();
    const f = fromLocalInput(from);
    const tt = fromLocalInput(to);
    if (!f || !tt) {
      setMessage({ error: true, text: t('subs.range_required') });
      return;
    }
    void again({ from: f, to: tt });
  };
  const mayReplay = may.replay();
  return (
    <section class="deliveries">
      <h3>
        {t('subs.deliveries')}
        <span class="spacer" />
        <label class="filter inline">
          <span>{t('filter.state')}</span>
          <select name="delivery_state" value={state} onChange={(e) => setState((e.target as HTMLSelectElement).value)}>
            <option value="">{t('all')}</option>
            {DELIVERY_STATES.map((d) => (
              <option key={d} value={d}>
                {label('dstate', d)}
              </option>
            ))}
          </select>
        </label>
        <button type="button" data-role="refresh-deliveries" onClick={() => setTick((x) => x + 1)}>
          {t('subs.refresh')}
        </button>
      </h3>
      {mayReplay && (
        <form class="replay-range" data-form="replay-range" onSubmit={replayRange} noValidate>
          <label class="field">
            <span>{t('subs.from')}</span>
            <input type="datetime-local" name="from" value={from} onInput={(e) => setFrom((e.target as HTMLInputElement).value)} />
          </label>
          <label class="field">
            <span>{t('subs.to')}</span>
            <input type="datetime-local" name="to" value={to} onInput={(e) => setTo((e.target as HTMLInputElement).value)} />
          </label>
          <button type="submit" disabled={busy} data-role="replay-range">
            {t('subs.replay_range')}
          </button>
        </form>
      )}
      <Result m={message} />
      {error && <p class="error">{error}</p>}
      {items === null && !error && <p class="muted">{t('loading')}</p>}
      {items && !items.length && <p class="muted">{t('subs.no_deliveries')}</p>}
      {items && items.length > 0 && (
        <div class="table-wrap">
          <table class="table deliveries-table" data-table="deliveries">
            <thead>
              <tr>
                <th>{t('subs.col_created')}</th>
                <th>{t('subs.col_event')}</th>
                <th>{t('subs.col_record')}</th>
                <th>{t('filter.state')}</th>
                <th>{t('subs.col_attempts')}</th>
                <th>{t('subs.col_last')}</th>
                <th>{t('subs.col_when')}</th>
                {mayReplay && <th />}
              </tr>
            </thead>
            <tbody>
              {items.map((d) => (
                <Fragment key={d.id}>
                  <tr data-delivery={d.id} data-state={d.state} data-event={d.event_id} class={`dstate-row-${d.state}`}>
                    <td>{dateTime(d.created_at)}</td>
                    <td>
                      {label('event', d.event_type)}
                      <div class="muted small mono">{d.event_id}</div>
                    </td>
                    <td>
                      <a href={`#/records/${d.record_id}`}>#{d.record_id}</a>
                    </td>
                    <td>
                      <span class={`badge dstate-${d.state}`}>{label('dstate', d.state)}</span>
                    </td>
                    <td>
                      {d.log?.length ? (
                        <button
                          type="button"
                          class="link"
                          data-role="attempts"
                          aria-expanded={logs.has(d.id)}
                          title={t('subs.attempt_log')}
                          onClick={() => toggleLog(d.id)}
                        >
                          {d.attempts} {logs.has(d.id) ? '▾' : '▸'}
                        </button>
                      ) : (
                        d.attempts
                      )}
                    </td>
                    <td class="small">
                      {answer(s, d.last_status, d.state === 'delivered')}
                      {d.last_error && <div class="error small">{d.last_error}</div>}
                    </td>
                    <td class="small">
                      {d.delivered_at
                        ? `${t('subs.delivered_at')} ${dateTime(d.delivered_at)}`
                        : d.next_at
                          ? `${t('subs.next_at')} ${dateTime(d.next_at)}`
                          : '—'}
                    </td>
                    {mayReplay && (
                      <td>
                        <button type="button" data-replay={d.event_id} disabled={busy} onClick={() => again({ event_id: d.event_id })}>
                          {t('subs.replay')}
                        </button>
                      </td>
                    )}
                  </tr>
                  {d.log?.length > 0 && logs.has(d.id) && (
                    <tr class="attempt-log" data-attempts={d.id}>
                      <td colSpan={mayReplay ? 8 : 7}>
                        <table class="table inner">
                          <tbody>
                            {d.log.map((a) => (
                              <tr key={a.attempt} data-attempt={a.attempt}>
                                <td>#{a.attempt}</td>
                                <td>{dateTime(a.at)}</td>
                                <td>{answer(s, a.status, !a.error)}</td>
                                <td>{a.latency_ms} ms</td>
                                <td class={a.error ? 'error' : ''}>{a.error ?? ''}</td>
                              </tr>
                            ))}
                          </tbody>
                        </table>
                      </td>
                    </tr>
                  )}
                </Fragment>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Detail(p: {
  s: Subscription;
  onChanged: (s: Subscription | null) => void;
  onSecret: (secret: string) => void;
}) {
  const { s } = p;
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<Message>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  useEffect(() => {
    setMessage(null);
    setConfirmDelete(false);
  }, [s.id]);
  const run = async (f: () => Promise<void>) => {
    setBusy(true);
    setMessage(null);
    try {
      await f();
    } catch (e) {
      setMessage({ error: true, text: errorText(e) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <article class="detail sub-detail" data-subscription-detail={s.id}>
      <header>
        <h2>{s.name}</h2>
        <button type="button" class="icon" title={t('close')} onClick={() => go('subscriptions')}>
          ×
        </button>
      </header>
      <div class="row-badges">
        <Status s={s} />
        <Counts s={s} />
      </div>
      <dl class="fields">
        <dt>{t('subs.department')}</dt>
        <dd>{s.department_id}</dd>
        <dt>{t('subs.transport')}</dt>
        <dd>{label('transport', s.transport)}</dd>
        {s.mqtt ? (
          <>
            <dt>{t('subs.mqtt_user')}</dt>
            <dd class="mono">{s.mqtt.username}</dd>
            <dt>{t('subs.mqtt_topic')}</dt>
            <dd class="mono">{s.mqtt.topic}</dd>
          </>
        ) : (
          <>
            <dt>{t('subs.url')}</dt>
            <dd class="mono">{s.url}</dd>
          </>
        )}
        <dt>{t('subs.filters')}</dt>
        <dd>
          <FiltersText f={s.filters} />
        </dd>
        {!s.enabled && (
          <>
            <dt>{t('subs.disabled_at')}</dt>
            <dd>
              {dateTime(s.disabled_at)}
              {s.disabled_reason ? ` · ${s.disabled_reason}` : ''}
            </dd>
          </>
        )}
        {s.failing_since && (
          <>
            <dt>{t('subs.failing')}</dt>
            <dd class="error">{dateTime(s.failing_since)}</dd>
          </>
        )}
        <dt>{t('subs.last_success')}</dt>
        <dd>{s.last_success_at ? dateTime(s.last_success_at) : t('subs.never')}</dd>
        <dt>{t('subs.created')}</dt>
        <dd>{dateTime(s.created_at)}</dd>
        {!s.mqtt && <dt>{t('subs.keys')}</dt>}
        {!s.mqtt && <dd>
          <ul class="plain">
            {(s.keys ?? []).map((k) => (
              <li key={k.id} data-key={k.id} class="small">
                {t('subs.key', { id: k.id, at: dateTime(k.created_at) })}
                {k.expires_at ? ` · ${t('subs.key_expires', { at: dateTime(k.expires_at) })}` : ` · ${t('subs.key_current')}`}
              </li>
            ))}
          </ul>
        </dd>}
      </dl>
      <div class="buttons">
        {may.rotate() && !s.mqtt && (
          <button
            type="button"
            data-subscription-action="rotate"
            disabled={busy}
            onClick={() =>
              run(async () => {
                const r = await rotateSubscription(s.id);
                if (r.secret) p.onSecret(r.secret);
                p.onChanged(r);
                setMessage({ error: false, text: t('subs.rotated') });
              })
            }
          >
            {t('subs.rotate')}
          </button>
        )}
        {may.updateSubscription() && (
          <button
            type="button"
            class={s.enabled ? '' : 'primary'}
            data-subscription-action={s.enabled ? 'disable' : 'enable'}
            disabled={busy}
            onClick={() =>
              run(async () => {
                p.onChanged(await updateSubscription(s.id, { enabled: !s.enabled }));
                setMessage({ error: false, text: s.enabled ? t('subs.disabled_now') : t('subs.enabled_now') });
              })
            }
          >
            {s.enabled ? t('subs.disable') : t('subs.enable')}
          </button>
        )}
        {may.deleteSubscription() &&
          (confirmDelete ? (
            <>
              <button
                type="button"
                class="danger"
                data-subscription-action="delete-confirm"
                disabled={busy}
                onClick={() =>
                  run(async () => {
                    await deleteSubscription(s.id);
                    p.onChanged(null);
                    go('subscriptions');
                  })
                }
              >
                {t('subs.delete_confirm')}
              </button>
              <button type="button" onClick={() => setConfirmDelete(false)}>
                {t('cancel')}
              </button>
            </>
          ) : (
            <button type="button" data-subscription-action="delete" disabled={busy} onClick={() => setConfirmDelete(true)}>
              {t('subs.delete')}
            </button>
          ))}
      </div>
      <Result m={message} />
      <Deliveries s={s} />
    </article>
  );
}

export function Subscriptions() {
  const [list, setList] = useState<Subscription[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const [secret, setSecret] = useState<{ id: number; secret: string; where: 'list' | 'detail' } | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!pageVisible.value) return;
    let stop = false;
    const load = () =>
      listSubscriptions().then(
        (items) => {
          if (!stop) {
            setList(items);
            setError(null);
          }
        },
        (e: unknown) => !stop && setError(errorText(e)),
      );
    void load();
    const timer = window.setInterval(load, LIST_POLL_MS);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [tick, pageVisible.value]);
  const selectedId = route.value.view === 'subscriptions' && route.value.id ? Number(route.value.id) : null;
  const selected = list?.find((s) => s.id === selectedId) ?? null;
  const replace = (s: Subscription) => setList((l) => (l ? (l.some((x) => x.id === s.id) ? l.map((x) => (x.id === s.id ? s : x)) : [s, ...l]) : [s]));
  return (
    <div class={`subscriptions ${selectedId ? 'with-detail' : ''}`}>
      <section class="subs-list">
        <div class="findings-head">
          <h2>{t('subs.title')}</h2>
          <span class="spacer" />
          <Notices />
        </div>
        {may.createSubscription() && !creating && (
          <button type="button" class="primary new-sub" data-role="new-subscription" onClick={() => setCreating(true)}>
            + {t('subs.new')}
          </button>
        )}
        {creating && (
          <NewSubscription
            onCancel={() => setCreating(false)}
            onCreated={(s) => {
              setCreating(false);
              const { secret: shown, ...rest } = s;
              replace(rest);
              if (shown) setSecret({ id: s.id, secret: shown, where: 'list' });
              setTick((x) => x + 1);
            }}
          />
        )}
        {secret?.where === 'list' && <SecretBox secret={secret.secret} onDismiss={() => setSecret(null)} />}
        {error && <p class="error">{error}</p>}
        {list === null && !error && <p class="muted pad">{t('loading')}</p>}
        {list && !list.length && <p class="muted pad">{t('subs.empty')}</p>}
        <ul class="plain sub-cards" data-subscriptions-list>
          {(list ?? []).map((s) => (
            <Card key={s.id} s={s} selected={s.id === selectedId} />
          ))}
        </ul>
      </section>
      <aside class="subs-detail">
        {selected ? (
          <>
            {secret?.where === 'detail' && secret.id === selected.id && (
              <SecretBox secret={secret.secret} onDismiss={() => setSecret(null)} />
            )}
            <Detail
              s={selected}
              onChanged={(s) => {
                if (s) {
                  const { secret: _shown, ...rest } = s;
                  replace(rest);
                } else {
                  setList((l) => l?.filter((x) => x.id !== selected.id) ?? null);
                }
              }}
              onSecret={(x) => setSecret({ id: selected.id, secret: x, where: 'detail' })}
            />
          </>
        ) : selectedId && list ? (
          <p class="error pad">{t('subs.not_found', { id: selectedId })}</p>
        ) : (
          <p class="muted pad">{t('subs.select')}</p>
        )}
      </aside>
    </div>
  );
}
