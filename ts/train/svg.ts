// The loss curves of a run as a self-contained SVG: axes with ticks, one polyline per series, a legend. The y axis
// is logarithmic when the values span more than a decade (distillation losses fall by orders of magnitude).

export interface Series {
  name: string;
  /** [step, value]; non-finite values are left out. */
  points: Array<[number, number]>;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Round tick values covering [lo, hi] (about n of them). */
function niceTicks(lo: number, hi: number, n: number): number[] {
  if (hi <= lo) hi = lo + 1;
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

const label = (v: number) => (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(0) : String(Number(v.toPrecision(4))));

export function lossCurveSvg(series: Series[], opts: { title?: string; width?: number; height?: number } = {}): string {
  const W = opts.width ?? 800;
  const H = opts.height ?? 480;
  const m = { left: 70, right: 200, top: 40, bottom: 50 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const clean = series.map((s) => ({ ...s, points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)) }));
  const all = clean.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const x0 = xs.length ? Math.min(...xs) : 0;
  const x1 = xs.length ? Math.max(...xs) : 1;
  const positive = ys.length > 0 && ys.every((y) => y > 0);
  const log = positive && Math.max(...ys) / Math.min(...ys) > 10;
  const f = (y: number) => (log ? Math.log10(y) : y);
  let y0 = ys.length ? Math.min(...ys.map(f)) : 0;
  let y1 = ys.length ? Math.max(...ys.map(f)) : 1;
  if (!log) y0 = Math.min(0, y0);
  if (log) {
    y0 = Math.floor(y0);
    y1 = Math.ceil(y1);
  }
  if (y1 <= y0) y1 = y0 + 1;
  const sx = (x: number) => m.left + (x1 > x0 ? ((x - x0) / (x1 - x0)) * pw : pw / 2);
  const sy = (y: number) => m.top + ph - ((f(y) - y0) / (y1 - y0)) * ph;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  if (opts.title) parts.push(`<text x="${m.left + pw / 2}" y="${m.top - 15}" text-anchor="middle" font-size="15">${esc(opts.title)}</text>`);
  parts.push(`<g stroke="#000" stroke-width="1"><line x1="${m.left}" y1="${m.top + ph}" x2="${m.left + pw}" y2="${m.top + ph}"/><line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}"/></g>`);
  for (const t of niceTicks(x0, x1, 8).filter((t) => t >= x0 && t <= x1)) {
    const x = sx(t).toFixed(1);
    parts.push(`<line x1="${x}" y1="${m.top + ph}" x2="${x}" y2="${m.top + ph + 5}" stroke="#000"/><text x="${x}" y="${m.top + ph + 18}" text-anchor="middle">${label(t)}</text>`);
  }
  const yTicks = log ? Array.from({ length: y1 - y0 + 1 }, (_, i) => 10 ** (y0 + i)) : niceTicks(y0, y1, 6).filter((t) => t >= y0 && t <= y1);
  for (const t of yTicks) {
    const y = sy(t).toFixed(1);
    parts.push(`<line x1="${m.left - 5}" y1="${y}" x2="${m.left}" y2="${y}" stroke="#000"/><line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#ddd"/><text x="${m.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${label(t)}</text>`);
  }
  parts.push(`<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">step</text>`);
  parts.push(`<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">loss${log ? ' (log scale)' : ''}</text>`);
  clean.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    if (s.points.length) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`);
    const ly = m.top + 10 + i * 20;
    parts.push(`<line x1="${m.left + pw + 15}" y1="${ly}" x2="${m.left + pw + 40}" y2="${ly}" stroke="${color}" stroke-width="3"/><text x="${m.left + pw + 46}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
