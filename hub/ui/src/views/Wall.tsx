// The video wall: a region → site → camera tree on the left, 1/4/9/16 tiles on the right.

import { useEffect, useState } from 'preact/hooks';
import { cameras, loaded, sites } from '../lib/data';
import { t, label } from '../lib/i18n';
import { regionLabel } from '../lib/format';
import { Tile } from '../wall/Tile';
import { LAYOUTS, fillUnarranged, place, setLayout, toggleFull, wall } from '../wall/state';
import type { Camera, Site } from '../lib/types';

interface RegionNode {
  region: string;
  sites: { site: Site; cameras: Camera[] }[];
}

function tree(): RegionNode[] {
  const bySite = new Map<string, Camera[]>();
  for (const c of cameras.value) {
    const list = bySite.get(c.site) ?? [];
    list.push(c);
    bySite.set(c.site, list);
  }
  const known = new Map(sites.value.map((s) => [s.id, s]));
  // Cameras of a site the site list does not have (not loaded yet) still show.
  for (const id of bySite.keys())
    if (!known.has(id))
      known.set(id, { id, name: id, region: '', industry: '', entity_name: '', uscc: '' });
  const regions = new Map<string, RegionNode>();
  for (const site of known.values()) {
    const node = regions.get(site.region) ?? { region: site.region, sites: [] };
    node.sites.push({
      site,
      cameras: (bySite.get(site.id) ?? []).sort((a, b) => (a.name || a.id).localeCompare(b.name || b.id)),
    });
    regions.set(site.region, node);
  }
  return [...regions.values()]
    .map((r) => ({ ...r, sites: r.sites.sort((a, b) => a.site.name.localeCompare(b.site.name)) }))
    .sort((a, b) => a.region.localeCompare(b.region));
}

function CameraTree() {
  const [closed, setClosed] = useState<Set<string>>(new Set());
  const toggle = (k: string) => {
    const s = new Set(closed);
    if (s.has(k)) s.delete(k);
    else s.add(k);
    setClosed(s);
  };
  const nodes = tree();
  if (!loaded.value.cameras) return <p class="muted pad">{t('loading')}</p>;
  if (!cameras.value.length) return <p class="muted pad">{t('wall.no_cameras')}</p>;
  return (
    <ul class="tree" role="tree">
      {nodes.map((r) => {
        const rk = `r:${r.region}`;
        const online = r.sites.reduce(
          (n, s) => n + s.cameras.filter((c) => c.health.state === 'online').length,
          0,
        );
        const total = r.sites.reduce((n, s) => n + s.cameras.length, 0);
        return (
          <li key={rk} role="treeitem" aria-expanded={!closed.has(rk)} data-tree-region={r.region}>
            <button type="button" class="tree-node" onClick={() => toggle(rk)}>
              <span class="caret">{closed.has(rk) ? '▸' : '▾'}</span>
              {regionLabel(r.region)}
              <span class="count">
                {online}/{total}
              </span>
            </button>
            {!closed.has(rk) && (
              <ul role="group">
                {r.sites.map(({ site, cameras: cams }) => {
                  const sk = `s:${site.id}`;
                  return (
                    <li key={sk} role="treeitem" aria-expanded={!closed.has(sk)} data-tree-site={site.id}>
                      <button type="button" class="tree-node" onClick={() => toggle(sk)} title={site.entity_name}>
                        <span class="caret">{closed.has(sk) ? '▸' : '▾'}</span>
                        {site.name}
                        {site.industry && <span class="tag">{label('industry', site.industry)}</span>}
                      </button>
                      {!closed.has(sk) && (
                        <ul role="group">
                          {cams.map((c) => (
                            <li key={c.id} role="treeitem">
                              <button
                                type="button"
                                class="tree-leaf"
                                draggable
                                data-tree-camera={c.id}
                                title={`${c.id} — ${label('state', c.health.state)}${c.health.last_error ? `: ${c.health.last_error}` : ''}`}
                                onDragStart={(e) => {
                                  e.dataTransfer?.setData('text/x-camera', c.id);
                                  if (e.dataTransfer) e.dataTransfer.effectAllowed = 'copy';
                                }}
                                onClick={() => place(c.id)}
                              >
                                <span class={`dot ${c.health.state}`} />
                                {c.name || c.id}
                              </button>
                            </li>
                          ))}
                        </ul>
                      )}
                    </li>
                  );
                })}
              </ul>
            )}
          </li>
        );
      })}
    </ul>
  );
}

export function Wall() {
  // Escape leaves the enlarged tile.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const full = wall.value.full;
      if (e.key === 'Escape' && full !== null) toggleFull(full);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);
  // A wall never arranged here starts with the first cameras of the tree.
  useEffect(() => {
    if (loaded.value.cameras) fillUnarranged(tree().flatMap((r) => r.sites.flatMap((s) => s.cameras.map((c) => c.id))));
  }, [loaded.value.cameras]);
  const w = wall.value;
  const n = w.layout;
  return (
    <div class="wall">
      <aside class="wall-side">
        <h2>{t('wall.tree')}</h2>
        <CameraTree />
      </aside>
      <section class="wall-main">
        <div class="wall-toolbar">
          <span class="muted">{t('wall.layout')}</span>
          {LAYOUTS.map((l) => (
            <button
              type="button"
              key={l}
              class={l === n ? 'seg active' : 'seg'}
              data-layout={l}
              aria-pressed={l === n}
              onClick={() => setLayout(l)}
            >
              {l}
            </button>
          ))}
        </div>
        <div class={`wall-grid g${n} ${w.full !== null ? 'has-full' : ''}`} data-layout={n}>
          {Array.from({ length: n }, (_, i) => (
            <Tile key={i} index={i} cameraId={w.tiles[i]} selected={w.selected === i} full={w.full === i} />
          ))}
        </div>
      </section>
    </div>
  );
}
