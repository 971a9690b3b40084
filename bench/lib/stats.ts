/** Median of the finite values (NaN when there is none). */
export function median(values: readonly number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/**
 * Spread of the samples around their median, in percent: half the range, (max - min) / 2,
 * over the median. 0 for a single sample.
 */
export function spreadPct(values: readonly number[]): number {
  const v = values.filter(Number.isFinite);
  if (v.length < 2) return 0;
  const m = median(v);
  if (m === 0) return 0;
  return ((Math.max(...v) - Math.min(...v)) / 2 / m) * 100;
}
