// The department's notices (escalations, failing or disabled endpoints): a badge with the
// number not yet seen in this browser, opening to the list; polled while shown.

import { useEffect, useState } from 'preact/hooks';
import { dateTime } from '../lib/format';
import { label, t } from '../lib/i18n';
import { may } from '../lib/permissions';
import { loadNotices, markNoticesSeen, notices, noticesSeen, unseenNotices } from '../lib/records';
import { pageVisible } from '../lib/visibility';

const POLL_MS = 30_000;

export function Notices() {
  const [error, setError] = useState<string | null>(null);
  const allowed = may.notices();
  useEffect(() => {
    if (!allowed || !pageVisible.value) return;
    const load = () =>
      loadNotices().then(
        () => setError(null),
        (e: unknown) => setError((e as Error).message),
      );
    void load();
    const timer = window.setInterval(load, POLL_MS);
    return () => clearInterval(timer);
  }, [allowed, pageVisible.value]);
  if (!allowed) return null;
  const list = notices.value;
  const unseen = unseenNotices.value;
  const seen = noticesSeen.value;
  return (
    <details
      class="notices"
      data-role="notices"
      data-unseen={unseen}
      onToggle={(e) => {
        if ((e.currentTarget as HTMLDetailsElement).open) markNoticesSeen();
      }}
    >
      <summary class={unseen ? 'has-unseen' : ''}>
        {t('notices.title')}
        <span class={`badge ${unseen ? 'notice-count' : ''}`} data-count={unseen}>
          {unseen || list.length}
        </span>
      </summary>
      <div class="notices-panel">
        {error && <p class="error small">{error}</p>}
        {!list.length && <p class="muted small">{t('notices.empty')}</p>}
        <ul class="plain">
          {list.map((n) => (
            <li key={n.id} class={`notice ${n.id > seen ? 'unseen' : ''}`} data-notice={n.id} data-kind={n.kind}>
              <div class="notice-head">
                <span class="badge">{label('notice', n.kind)}</span>
                <span class="muted small">{dateTime(n.at)}</span>
              </div>
              <div>{n.message}</div>
              <div class="small">
                {n.record_id !== null && (
                  <a href={`#/records/${n.record_id}`} data-notice-record={n.record_id}>
                    {t('notices.record', { id: n.record_id })}
                  </a>
                )}{' '}
                {n.subscription_id !== null && may.subscriptions() && (
                  <a href={`#/subscriptions/${n.subscription_id}`} data-notice-subscription={n.subscription_id}>
                    {t('notices.subscription', { id: n.subscription_id })}
                  </a>
                )}
              </div>
            </li>
          ))}
        </ul>
      </div>
    </details>
  );
}
