// Hand-written SVG charts for the benchmark report: line charts (linear or log axes) and grouped
// bar charts, with axes, tick labels, a legend and a subtitle naming where the figures come from.
// No browser or plotting library: the figures are placed by arithmetic and written as text.

export interface Series {
  name: string;
  points: Array<[number, number]>;
  dashed?: boolean;
  /** Series of one kind (e.g. one datapath build) may share a colour; else the palette's next. */
  color?: string;
}

export interface LineChartSpec {
  title: string;
  /** Machine, kernel, date: every plot says where its figures were measured. */
  subtitle: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  series: Series[];
  /** A line of small print under the plot. */
  note?: string;
}

export interface BarChartSpec {
  title: string;
  subtitle: string;
  yLabel: string;
  categories: string[];
  series: Array<{ name: string; values: Array<number | null> }>;
  yLog?: boolean;
  /** A horizontal reference line, e.g. 1.0 for ratios against a baseline. */
  reference?: { value: number; label: string };
  note?: string;
}

const WIDTH = 760;
const HEIGHT = 440;
const M = { left: 78, right: 210, top: 66, bottom: 70 };
const PLOT_W = WIDTH - M.left - M.right;
const PLOT_H = HEIGHT - M.top - M.bottom;
export const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** Short tick text: 1k, 10k, 2.5M, 0.05. */
export function formatTick(v: number): string {
  const a = Math.abs(v);
  const trim = (x: number): string => String(+x.toPrecision(3));
  if (a >= 1e9) return `${trim(v / 1e9)}G`;
  if (a >= 1e6) return `${trim(v / 1e6)}M`;
  if (a >= 1e4) return `${trim(v / 1e3)}k`;
  return trim(v);
}

interface Axis {
  map(v: number): number;
  ticks: number[];
}

function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

/** An axis over [lo, hi] onto [from, to] pixels; log axes span whole decades. */
function axis(values: number[], log: boolean, from: number, to: number, zero: boolean): Axis {
  const finite = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
  let lo = finite.length > 0 ? Math.min(...finite) : log ? 1 : 0;
  let hi = finite.length > 0 ? Math.max(...finite) : log ? 10 : 1;
  if (log) {
    lo = 10 ** Math.floor(Math.log10(lo));
    hi = 10 ** Math.ceil(Math.log10(hi));
    if (hi <= lo) hi = lo * 10;
    const ticks: number[] = [];
    const decades = Math.round(Math.log10(hi / lo));
    for (let d = lo; d <= hi * 1.0001; d *= 10) {
      ticks.push(d);
      if (decades <= 2 && d * 10 <= hi * 1.0001) ticks.push(d * 2, d * 5);
    }
    ticks.sort((a, b) => a - b);
    const l0 = Math.log10(lo);
    const l1 = Math.log10(hi);
    return { map: (v) => from + ((Math.log10(v) - l0) / (l1 - l0)) * (to - from), ticks };
  }
  if (zero) lo = Math.min(0, lo);
  if (hi === lo) hi = lo + 1;
  const step = niceStep(hi - lo, 5);
  lo = Math.floor(lo / step) * step;
  hi = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let t = lo; t <= hi + step / 1000; t += step) ticks.push(+t.toPrecision(12));
  return { map: (v) => from + ((v - lo) / (hi - lo)) * (to - from), ticks };
}

function frame(title: string, subtitle: string, yLabel: string, xLabel: string | undefined, note: string | undefined, body: string[]): string {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="${M.left}" y="24" font-size="16" font-weight="bold">${escapeXml(title)}</text>`,
    `<text x="${M.left}" y="44" font-size="11" fill="#555555">${escapeXml(subtitle)}</text>`,
    ...body,
    `<text transform="translate(18 ${M.top + PLOT_H / 2}) rotate(-90)" text-anchor="middle">${escapeXml(yLabel)}</text>`,
  ];
  if (xLabel !== undefined) out.push(`<text x="${M.left + PLOT_W / 2}" y="${M.top + PLOT_H + 40}" text-anchor="middle">${escapeXml(xLabel)}</text>`);
  if (note !== undefined) out.push(`<text x="${M.left}" y="${HEIGHT - 10}" font-size="10" fill="#555555">${escapeXml(note)}</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function yGrid(y: Axis): string[] {
  const out: string[] = [];
  for (const t of y.ticks) {
    const py = y.map(t).toFixed(1);
    out.push(`<line x1="${M.left}" y1="${py}" x2="${M.left + PLOT_W}" y2="${py}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${M.left - 6}" y="${py}" text-anchor="end" dominant-baseline="middle">${escapeXml(formatTick(t))}</text>`);
  }
  out.push(`<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + PLOT_H}" stroke="#333333"/>`);
  out.push(`<line x1="${M.left}" y1="${M.top + PLOT_H}" x2="${M.left + PLOT_W}" y2="${M.top + PLOT_H}" stroke="#333333"/>`);
  return out;
}

function legend(names: Array<{ name: string; color: string; dashed?: boolean; bar?: boolean }>): string[] {
  const out: string[] = [];
  const x = M.left + PLOT_W + 16;
  names.forEach((s, i) => {
    const y = M.top + 8 + i * 20;
    out.push(`<g class="legend" data-series="${escapeXml(s.name)}">`);
    if (s.bar === true) out.push(`<rect x="${x}" y="${y - 6}" width="18" height="12" fill="${s.color}"/>`);
    else out.push(`<line x1="${x}" y1="${y}" x2="${x + 18}" y2="${y}" stroke="${s.color}" stroke-width="2.5"${s.dashed === true ? ' stroke-dasharray="5 3"' : ''}/>`);
    out.push(`<text x="${x + 24}" y="${y}" dominant-baseline="middle">${escapeXml(s.name)}</text>`, '</g>');
  });
  return out;
}

export function lineChart(c: LineChartSpec): string {
  const usable = (p: [number, number]): boolean => Number.isFinite(p[0]) && Number.isFinite(p[1]) && (c.xLog !== true || p[0] > 0) && (c.yLog !== true || p[1] > 0);
  const series = c.series.map((s) => ({ ...s, points: s.points.filter(usable).sort((a, b) => a[0] - b[0]) }));
  const all = series.flatMap((s) => s.points);
  const x = axis(all.map((p) => p[0]), c.xLog === true, M.left, M.left + PLOT_W, false);
  const y = axis(all.map((p) => p[1]), c.yLog === true, M.top + PLOT_H, M.top, true);
  const body = yGrid(y);
  for (const t of x.ticks) {
    const px = x.map(t).toFixed(1);
    body.push(`<line x1="${px}" y1="${M.top + PLOT_H}" x2="${px}" y2="${M.top + PLOT_H + 5}" stroke="#333333"/>`);
    body.push(`<text x="${px}" y="${M.top + PLOT_H + 18}" text-anchor="middle">${escapeXml(formatTick(t))}</text>`);
  }
  series.forEach((s, i) => {
    const color = s.color ?? COLORS[i % COLORS.length]!;
    body.push(`<g class="series" data-series="${escapeXml(s.name)}">`);
    if (s.points.length > 1) {
      const d = s.points.map(([px, py], k) => `${k === 0 ? 'M' : 'L'}${x.map(px).toFixed(1)},${y.map(py).toFixed(1)}`).join(' ');
      body.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${s.dashed === true ? ' stroke-dasharray="5 3"' : ''}/>`);
    }
    for (const [px, py] of s.points) body.push(`<circle cx="${x.map(px).toFixed(1)}" cy="${y.map(py).toFixed(1)}" r="3.5" fill="${color}"><title>${escapeXml(`${s.name}: ${formatTick(px)} -> ${+py.toPrecision(4)}`)}</title></circle>`);
    body.push('</g>');
  });
  body.push(...legend(series.map((s, i) => ({ name: s.name, color: s.color ?? COLORS[i % COLORS.length]!, dashed: s.dashed }))));
  return frame(c.title, c.subtitle, c.yLabel, c.xLabel, c.note, body);
}

export function barChart(c: BarChartSpec): string {
  const values = c.series.flatMap((s) => s.values).filter((v): v is number => v !== null && Number.isFinite(v));
  const y = axis(c.reference === undefined ? values : [...values, c.reference.value], c.yLog === true, M.top + PLOT_H, M.top, true);
  const body = yGrid(y);
  const groupW = PLOT_W / Math.max(1, c.categories.length);
  const barW = (groupW * 0.8) / Math.max(1, c.series.length);
  const base = c.yLog === true ? M.top + PLOT_H : y.map(0);
  c.categories.forEach((cat, g) => {
    body.push(`<text x="${(M.left + groupW * (g + 0.5)).toFixed(1)}" y="${M.top + PLOT_H + 18}" text-anchor="middle">${escapeXml(cat)}</text>`);
  });
  c.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    body.push(`<g class="series" data-series="${escapeXml(s.name)}">`);
    s.values.forEach((v, g) => {
      if (v === null || !Number.isFinite(v) || (c.yLog === true && v <= 0)) return;
      const px = M.left + groupW * g + groupW * 0.1 + barW * i;
      const top = y.map(v);
      body.push(`<rect x="${px.toFixed(1)}" y="${Math.min(top, base).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${Math.abs(base - top).toFixed(1)}" fill="${color}"><title>${escapeXml(`${s.name}, ${c.categories[g]}: ${+v.toPrecision(4)}`)}</title></rect>`);
      body.push(`<text x="${(px + barW / 2 - 1).toFixed(1)}" y="${(Math.min(top, base) - 4).toFixed(1)}" text-anchor="middle" font-size="10">${escapeXml(formatTick(+v.toPrecision(3)))}</text>`);
    });
    body.push('</g>');
  });
  if (c.reference !== undefined) {
    const py = y.map(c.reference.value).toFixed(1);
    body.push(`<line x1="${M.left}" y1="${py}" x2="${M.left + PLOT_W}" y2="${py}" stroke="#333333" stroke-dasharray="4 3"/>`);
  }
  // The reference line is named in the legend, where it cannot cover a bar's label.
  const ref = c.reference === undefined ? [] : [{ name: c.reference.label, color: '#333333', dashed: true }];
  body.push(...legend([...c.series.map((s, i) => ({ name: s.name, color: COLORS[i % COLORS.length]!, bar: true })), ...ref]));
  return frame(c.title, c.subtitle, c.yLabel, undefined, c.note, body);
}
