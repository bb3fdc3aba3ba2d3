// Region codes (GB/T 2260) as prefixes, the way the hub scopes departments: a province
// `610000` covers `61xxxx`, a city `610100` covers `6101xx`.

export function prefixOf(code: string): string {
  if (/^\d{2}0000$/.test(code)) return code.slice(0, 2);
  if (/^\d{4}00$/.test(code)) return code.slice(0, 4);
  return code;
}

/** Province, city and county codes of the given site regions, sorted. */
export function regionLevels(codes: string[]): string[] {
  const out = new Set<string>();
  for (const c of codes) {
    if (!/^\d{6}$/.test(c)) continue;
    out.add(`${c.slice(0, 2)}0000`);
    out.add(`${c.slice(0, 4)}00`);
    out.add(c);
  }
  return [...out].sort();
}
