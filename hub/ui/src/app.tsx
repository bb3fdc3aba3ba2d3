// The page: the login form, or the top bar and the current view for a logged-in user; the
// lists' polling, the findings stream and the critical-finding alarm run while logged in.

import { useEffect } from 'preact/hooks';
import { logout, maybeLoggedIn, refreshSession, session } from './lib/api';
import { alerts, dismissAlerts } from './lib/alert';
import { startPolling, dataError } from './lib/data';
import { startStream } from './lib/findings';
import { label, t } from './lib/i18n';
import { may } from './lib/permissions';
import { go, route, type View } from './lib/route';
import { Findings } from './views/Findings';
import { LangSwitch } from './views/LangSwitch';
import { Login } from './views/Login';
import { Overview } from './views/Overview';
import { Records } from './views/Records';
import { Sensors } from './views/Sensors';
import { Subscriptions } from './views/Subscriptions';
import { Wall } from './views/Wall';

/** A phone: inspectors in the field, who open records rather than the video wall. */
const phone = () => window.matchMedia('(max-width: 600px)').matches;

function allowedViews(): View[] {
  const v: View[] = [];
  if (may.cameras()) v.push('wall');
  if (may.findings()) v.push('findings');
  if (may.records()) v.push('records');
  if (may.devices()) v.push('sensors');
  if (may.cameras() || may.devices() || may.findings()) v.push('overview');
  if (may.subscriptions()) v.push('subscriptions');
  return v;
}

/** The view shown when the address names none (or one the session may not see). */
function defaultView(views: View[]): View | undefined {
  if (phone() && views.includes('records')) return 'records';
  return views[0];
}

function AlertBanner() {
  const list = alerts.value;
  if (!list.length) return null;
  const newest = list[0];
  return (
    <button
      type="button"
      class="alert-banner"
      data-role="critical-alert"
      data-finding-alert={newest.id}
      onClick={() => {
        dismissAlerts();
        go('findings', newest.id);
      }}
    >
      <strong>⚠ {t('alert.critical')}</strong>
      {list.length > 1 ? ` (${list.length})` : ''}: {newest.summary} — {t('alert.click')}
    </button>
  );
}

function Shell() {
  const s = session.value!;
  const views = allowedViews();
  const current = route.value.view && views.includes(route.value.view) ? route.value.view : defaultView(views);

  useEffect(() => startPolling(), []);
  useEffect(() => (may.stream() ? startStream() : undefined), []);
  useEffect(() => {
    if (current && route.value.view !== current) go(current);
  }, [current]);

  const names: Record<View, string> = {
    wall: t('nav.wall'),
    findings: t('nav.findings'),
    records: t('nav.records'),
    sensors: t('nav.sensors'),
    overview: t('nav.overview'),
    subscriptions: t('nav.subscriptions'),
  };
  return (
    <div class="shell">
      <header class="topbar">
        <span class="brand">{t('product')}</span>
        <nav>
          {views.map((v) => (
            <a key={v} href={`#/${v}`} class={v === current ? 'active' : ''} data-nav={v}>
              {names[v]}
            </a>
          ))}
        </nav>
        <span class="spacer" />
        {dataError.value && <span class="error small" title={dataError.value}>⚠ {dataError.value}</span>}
        <span class="user" data-role="user">
          {s.name}
          <span class="muted"> · {s.roles.map((r) => label('role', r)).join(', ')}</span>
          {s.department && <span class="muted"> · {s.department.name}</span>}
        </span>
        <LangSwitch />
        <button type="button" data-role="logout" onClick={() => logout()}>
          {t('logout')}
        </button>
      </header>
      <AlertBanner />
      <main class="content" data-view={current}>
        {current === 'wall' && <Wall />}
        {current === 'findings' && <Findings />}
        {current === 'sensors' && <Sensors />}
        {current === 'records' && <Records />}
        {current === 'overview' && <Overview />}
        {current === 'subscriptions' && <Subscriptions />}
        {!current && <p class="pad">{t('error.forbidden')}</p>}
      </main>
    </div>
  );
}

export function App() {
  useEffect(() => {
    // Not logged in, or the hub away: the login page (whose submit says which).
    const out = () => {
      if (session.value === undefined) session.value = null;
    };
    if (!maybeLoggedIn()) return out();
    void refreshSession().then((ok) => ok || out(), out);
  }, []);
  if (session.value === undefined) return <p class="pad muted">{t('loading')}</p>;
  if (session.value === null) return <Login />;
  // Keyed by user: a different login starts everything afresh.
  return <Shell key={session.value.name} />;
}
