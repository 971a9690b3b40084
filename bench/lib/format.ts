/** Number formatting shared by the console tables, the JSON cells and RESULTS.md. */

/** 45_612_345 -> "45.6 M", 196_000 -> "196 K", 812 -> "812". Three significant digits. */
export function si(n: number): string {
  if (!Number.isFinite(n)) return '-';
  const abs = Math.abs(n);
  const [div, unit] = abs >= 1e9 ? [1e9, ' G'] : abs >= 1e6 ? [1e6, ' M'] : abs >= 1e3 ? [1e3, ' K'] : [1, ''];
  return `${sig3(n / div)}${unit}`;
}

/** Three significant digits, no exponent: 45.61 -> "45.6", 1.0049 -> "1.00", 0.01234 -> "0.0123". */
export function sig3(n: number): string {
  if (!Number.isFinite(n)) return '-';
  if (n === 0) return '0';
  const abs = Math.abs(n);
  if (abs >= 100) return n.toFixed(0);
  const digits = Math.min(6, Math.max(0, 2 - Math.floor(Math.log10(abs))));
  return n.toFixed(digits);
}

/** Nanoseconds as "175 ns", "5.10 us", "1.20 ms". */
export function duration(ns: number): string {
  if (!Number.isFinite(ns)) return '-';
  if (ns >= 1e6) return `${sig3(ns / 1e6)} ms`;
  if (ns >= 1e3) return `${sig3(ns / 1e3)} us`;
  return `${sig3(ns)} ns`;
}

/** Bytes as "3.30 MB" (decimal, as the Go table) or "512 B". */
export function bytes(n: number): string {
  if (!Number.isFinite(n)) return '-';
  if (n >= 1e9) return `${sig3(n / 1e9)} GB`;
  if (n >= 1e6) return `${sig3(n / 1e6)} MB`;
  if (n >= 1e3) return `${sig3(n / 1e3)} kB`;
  return `${n.toFixed(0)} B`;
}

/** Binary sizes for option values: 1 MiB, 64 MiB, 256 KiB. */
export function binary(n: number): string {
  if (n >= 1 << 30 && n % (1 << 30) === 0) return `${n / (1 << 30)} GiB`;
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n / (1 << 20)} MiB`;
  if (n >= 1 << 10 && n % (1 << 10) === 0) return `${n / (1 << 10)} KiB`;
  return `${n} B`;
}

export function pct(n: number, signed = false): string {
  if (!Number.isFinite(n)) return '-';
  const s = `${sig3(n)}%`;
  return signed && n > 0 ? `+${s}` : s;
}

export function int(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-';
}

export interface Table {
  /** Stable key, also the JSON key. */
  id: string;
  title: string;
  columns: string[];
  rows: TableRow[];
  /** Printed under the table. */
  notes?: string[];
}

export interface TableRow {
  /** Scenario id the row comes from ('' for rows that are not measured here, e.g. the Go figures). */
  id: string;
  cells: string[];
}

/** Fixed-width text table for the terminal; numbers right-aligned. */
export function textTable(t: Table): string {
  const widths = t.columns.map((c, i) => Math.max(c.length, ...t.rows.map((r) => (r.cells[i] ?? '').length)));
  const numeric = t.columns.map((_, i) => t.rows.length > 0 && t.rows.every((r) => /^[-+±]?[\d.,]+( ?[A-Za-z%/]+)?$|^-$/.test(r.cells[i] ?? '-')));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [t.title, line(t.columns), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of t.rows) out.push(line(r.cells));
  if (t.notes?.length) out.push('', ...t.notes);
  return out.join('\n');
}

/** GitHub-flavoured Markdown table (pipes in cells escaped). */
export function markdownTable(t: Table): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const numeric = t.columns.map((_, i) => t.rows.length > 0 && t.rows.every((r) => /^[-+±]?[\d.,]+( ?[A-Za-z%/]+)?$|^-$/.test(r.cells[i] ?? '-')));
  const out = [`| ${t.columns.map(esc).join(' | ')} |`, `|${numeric.map((n) => (n ? '---:' : '---')).join('|')}|`];
  for (const r of t.rows) out.push(`| ${r.cells.map(esc).join(' | ')} |`);
  return out.join('\n');
}
