// The wall's layout and which camera each tile shows, kept in localStorage so that a reload
// restores the wall.

import { signal, effect } from '@preact/signals';

export const LAYOUTS = [1, 4, 9, 16] as const;
export type Layout = (typeof LAYOUTS)[number];
export const MAX_TILES = 16;

export interface WallState {
  layout: Layout;
  /** Camera id per tile (16 slots; those past the layout are kept for when it grows). */
  tiles: (string | null)[];
  /** The tile shown alone (in-page fullscreen), if any. */
  full: number | null;
  /** Where the next camera clicked in the tree goes. */
  selected: number | null;
}

const KEY = 'hub.wall.v1';

function restore(): WallState {
  const empty: WallState = { layout: 4, tiles: Array(MAX_TILES).fill(null), full: null, selected: null };
  try {
    const v = JSON.parse(localStorage.getItem(KEY) || 'null');
    if (!v || typeof v !== 'object') return empty;
    const layout = LAYOUTS.includes(v.layout) ? v.layout : 4;
    const tiles = Array.from({ length: MAX_TILES }, (_, i) =>
      typeof v.tiles?.[i] === 'string' ? (v.tiles[i] as string) : null,
    );
    const full = Number.isInteger(v.full) && v.full >= 0 && v.full < layout ? v.full : null;
    const selected = Number.isInteger(v.selected) && v.selected < layout ? v.selected : null;
    return { layout, tiles, full, selected };
  } catch {
    return empty;
  }
}

/** Nothing was kept: the wall shows the first cameras in scope until someone arranges it. */
let unarranged = (() => {
  try {
    return localStorage.getItem(KEY) === null;
  } catch {
    return true;
  }
})();

export const wall = signal<WallState>(restore());

/** On a wall never arranged in this browser, the first cameras (in tree order) fill it. */
export function fillUnarranged(cameraIds: string[]): void {
  if (!unarranged || !cameraIds.length) return;
  unarranged = false;
  const w = wall.value;
  if (w.tiles.some((t) => t !== null)) return;
  const tiles = Array.from({ length: MAX_TILES }, (_, i) => (i < w.layout ? cameraIds[i] ?? null : null));
  wall.value = { ...w, tiles };
}

effect(() => {
  try {
    localStorage.setItem(KEY, JSON.stringify(wall.value));
  } catch {
    // Not kept across reloads.
  }
});

export function setLayout(layout: Layout): void {
  const w = wall.value;
  wall.value = {
    ...w,
    layout,
    full: w.full !== null && w.full < layout ? w.full : null,
    selected: w.selected !== null && w.selected < layout ? w.selected : null,
  };
}

/** Puts `camera` in tile `index`. */
export function assign(index: number, camera: string | null): void {
  const tiles = [...wall.value.tiles];
  tiles[index] = camera;
  wall.value = { ...wall.value, tiles };
}

/**
 * A camera clicked in the tree: into the selected tile, else the first free one, else the
 * first; the selection then moves on to the next free tile.
 */
export function place(camera: string): void {
  const w = wall.value;
  const n = w.layout;
  let target = w.selected;
  if (target === null || target >= n) {
    target = w.tiles.slice(0, n).findIndex((t) => t === null);
    if (target < 0) target = 0;
  }
  const tiles = [...w.tiles];
  tiles[target] = camera;
  const nextFree = tiles.slice(0, n).findIndex((t) => t === null);
  wall.value = { ...w, tiles, selected: w.selected === null ? null : nextFree >= 0 ? nextFree : target };
}

export function select(index: number | null): void {
  wall.value = { ...wall.value, selected: index };
}

export function toggleFull(index: number): void {
  wall.value = { ...wall.value, full: wall.value.full === index ? null : index };
}

/** Swaps two tiles (a tile dragged onto another). */
export function swap(a: number, b: number): void {
  const tiles = [...wall.value.tiles];
  [tiles[a], tiles[b]] = [tiles[b], tiles[a]];
  wall.value = { ...wall.value, tiles };
}
