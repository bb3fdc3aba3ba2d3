// A device's readings over a period, following the API's pages (newest first) up to a cap.

import { get, qs } from './api';
import type { Page, Reading } from './types';

export interface Readings {
  items: Reading[];
  /** More readings lie in the period than were fetched (the oldest are missing). */
  truncated: boolean;
}

export async function fetchReadings(
  device: string,
  sinceMs: number,
  untilMs: number,
  opts: { limit?: number; pages?: number } = {},
): Promise<Readings> {
  const limit = opts.limit ?? 2000;
  const pages = opts.pages ?? 3;
  const items: Reading[] = [];
  let cursor: string | null | undefined = null;
  for (let i = 0; i < pages; i++) {
    const page: Page<Reading> = await get<Page<Reading>>(
      `/api/v1/devices/${encodeURIComponent(device)}/readings${qs({
        since: Math.floor(sinceMs),
        until: Math.ceil(untilMs),
        limit,
        cursor: cursor ?? '',
      })}`,
    );
    items.push(...page.items);
    cursor = page.next;
    if (!cursor) return { items, truncated: false };
  }
  return { items, truncated: true };
}
