// Sites, cameras and devices, polled while the page is visible and someone is logged in; the
// views read these signals.

import { signal, computed } from '@preact/signals';
import { get } from './api';
import { may } from './permissions';
import type { Camera, Device, Page, Site } from './types';

export const sites = signal<Site[]>([]);
export const cameras = signal<Camera[]>([]);
export const devices = signal<Device[]>([]);
/** Whether each list has loaded at least once. */
export const loaded = signal({ sites: false, cameras: false, devices: false });
export const dataError = signal<string | null>(null);

export const siteById = computed(() => new Map(sites.value.map((s) => [s.id, s])));
export const cameraById = computed(() => new Map(cameras.value.map((c) => [c.id, c])));
export const deviceById = computed(() => new Map(devices.value.map((d) => [d.id, d])));

async function load<T>(
  path: string,
  into: { value: T[] },
  which: 'sites' | 'cameras' | 'devices',
): Promise<void> {
  try {
    const page = await get<Page<T>>(path);
    into.value = page.items;
    if (!loaded.value[which]) loaded.value = { ...loaded.value, [which]: true };
    dataError.value = null;
  } catch (e) {
    dataError.value = (e as Error).message;
  }
}

export const refreshSites = () => (may.sites() ? load('/api/v1/sites', sites, 'sites') : Promise.resolve());
export const refreshCameras = () =>
  may.cameras() ? load('/api/v1/cameras', cameras, 'cameras') : Promise.resolve();
export const refreshDevices = () =>
  may.devices() ? load('/api/v1/devices', devices, 'devices') : Promise.resolve();

/** Polls the lists (cameras every 5 s, devices 15 s, sites 60 s) until the returned stop. */
export function startPolling(): () => void {
  const timers: number[] = [];
  const every = (ms: number, f: () => Promise<void>) => {
    void f();
    timers.push(
      window.setInterval(() => {
        if (document.visibilityState === 'visible') void f();
      }, ms),
    );
  };
  every(60_000, refreshSites);
  every(5_000, refreshCameras);
  every(15_000, refreshDevices);
  const onVisible = () => {
    if (document.visibilityState === 'visible') {
      void refreshCameras();
      void refreshDevices();
    }
  };
  document.addEventListener('visibilitychange', onVisible);
  return () => {
    timers.forEach((t) => clearInterval(t));
    document.removeEventListener('visibilitychange', onVisible);
    sites.value = [];
    cameras.value = [];
    devices.value = [];
    loaded.value = { sites: false, cameras: false, devices: false };
  };
}
