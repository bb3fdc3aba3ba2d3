// Hash routes (`#/wall`, `#/findings/42`, `#/sensors/fridge-01`, `#/overview`, `#/records/7`,
// `#/subscriptions/3`): the hub serves one index.html, so the page's path never has to be
// known to the server.

import { signal } from '@preact/signals';

export type View = 'wall' | 'findings' | 'records' | 'sensors' | 'overview' | 'subscriptions';
export const VIEWS: View[] = ['wall', 'findings', 'records', 'sensors', 'overview', 'subscriptions'];
export interface Route {
  view: View | null;
  /** The item after the view: a finding, device, record or subscription id. */
  id: string | null;
}

function parse(): Route {
  const [view, id] = location.hash.replace(/^#\/?/, '').split('/');
  const v = VIEWS.find((x) => x === view) ?? null;
  return { view: v, id: id ? decodeURIComponent(id) : null };
}

export const route = signal<Route>(parse());
window.addEventListener('hashchange', () => {
  route.value = parse();
});

export function go(view: View, id?: string | number | null): void {
  const hash = `#/${view}${id !== undefined && id !== null ? `/${encodeURIComponent(String(id))}` : ''}`;
  if (location.hash !== hash) location.hash = hash;
  else route.value = parse();
}
