// Naive float64 references for the interpolation ops: every output element is a weighted sum of input elements,
// with the source coordinates written out the way PyTorch and RADIO define them.

export type Layout = 'NCHW' | 'NLC';

export interface RefGeometry {
  layout: Layout;
  /** 'grid' is RADIO's training crop: grid_sample, bilinear, zeros padding, align_corners true. */
  mode: 'bilinear' | 'nearest' | 'grid' | 'bicubic';
  alignCorners: boolean;
  /** bilinear and bicubic: PyTorch's antialias=True. */
  antialias?: boolean;
  /** PyTorch's scale_factor per axis: the coordinate ratio is then 1/s (without alignCorners). */
  factorH?: number;
  factorW?: number;
  batch: number;
  channels: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  /** grid mode: per sample (sx, sy), (px, py) and keep. */
  scale?: ArrayLike<number>;
  offset?: ArrayLike<number>;
  keep?: ArrayLike<number>;
}

type Taps = Array<[number, number]>; // (input index, weight)

// The source coordinate ratio along an axis: (in − 1)/(out − 1) with alignCorners, else 1/s for a scale factor s,
// else in/out.
function ratioOf(inN: number, outN: number, align: boolean, factor?: number): number {
  if (align) return outN > 1 ? (inN - 1) / (outN - 1) : 0;
  return factor ? 1 / factor : inN / outN;
}

// PyTorch's bilinear: the source coordinate clamped at 0, and an axis resized to its own size copied.
function bilinearTaps(o: number, inN: number, outN: number, ratio: number, align: boolean): Taps {
  if (outN === inN) return [[o, 1]];
  const src = align ? o * ratio : Math.max((o + 0.5) * ratio - 0.5, 0);
  const i0 = Math.min(Math.floor(src), inN - 1);
  const i1 = Math.min(i0 + 1, inN - 1);
  const w1 = src - i0;
  return [[i0, 1 - w1], [i1, w1]];
}

// PyTorch's legacy nearest computes floor(o · ratio) with the ratio and the product in float32.
function nearestTaps(o: number, inN: number, ratio: number): Taps {
  return [[Math.min(Math.floor(Math.fround(o * Math.fround(ratio))), inN - 1), 1]];
}

// Keys' cubic convolution kernel W(d) with parameter a: upsample_bicubic2d uses a = −0.75, antialias a = −0.5.
function keys(d: number, a: number): number {
  const x = Math.abs(d);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return a * x ** 3 - 5 * a * x * x + 8 * a * x - 4 * a;
  return 0;
}

// upsample_bicubic2d: the source coordinate (not clamped at 0), the four pixels around it at distances 1 + t, t,
// 1 − t and 2 − t, their indices clamped to the map (border pixels repeated).
function bicubicTaps(o: number, inN: number, ratio: number, align: boolean): Taps {
  const src = align ? o * ratio : (o + 0.5) * ratio - 0.5;
  const i = Math.floor(src);
  const t = src - i;
  return [0, 1, 2, 3].map((k) => [Math.min(Math.max(i - 1 + k, 0), inN - 1), keys(t + 1 - k, -0.75)]);
}

// Antialias: every input pixel within the filter's support of the output's centre ratio·(o + 0.5), the filter
// stretched by the ratio when downsampling, the weights normalised to sum 1.
function antialiasTaps(o: number, inN: number, ratio: number, cubic: boolean): Taps {
  const size = cubic ? 4 : 2;
  const support = ratio >= 1 ? (size / 2) * ratio : size / 2;
  const invscale = ratio >= 1 ? 1 / ratio : 1;
  const center = ratio * (o + 0.5);
  const lo = Math.max(Math.trunc(center - support + 0.5), 0);
  const hi = Math.min(Math.trunc(center + support + 0.5), inN);
  const filter = (x: number) => (cubic ? keys(x, -0.5) : Math.max(0, 1 - Math.abs(x)));
  const taps: Taps = [];
  for (let j = lo; j < hi; j++) taps.push([j, filter((j - center + 0.5) * invscale)]);
  const total = taps.reduce((s, [, w]) => s + w, 0);
  return taps.map(([j, w]) => [j, total !== 0 ? w / total : w]);
}

// grid = 2·(linspace(0,1,out)·s + p) − 1, unnormalised with align_corners: ((grid + 1) / 2)·(in − 1).
function gridTaps(o: number, inN: number, outN: number, s: number, p: number): Taps {
  const lin = outN > 1 ? o / (outN - 1) : 0;
  const c = (lin * s + p) * (inN - 1);
  const i0 = Math.floor(c);
  const taps: Taps = [];
  if (i0 >= 0 && i0 < inN) taps.push([i0, 1 - (c - i0)]);
  if (i0 + 1 >= 0 && i0 + 1 < inN) taps.push([i0 + 1, c - i0]);
  return taps;
}

function axisTaps(g: RefGeometry, axis: 0 | 1, b: number, o: number): Taps {
  const inN = axis === 0 ? g.inH : g.inW;
  const outN = axis === 0 ? g.outH : g.outW;
  const ratio = ratioOf(inN, outN, g.alignCorners, axis === 0 ? g.factorH : g.factorW);
  if (g.antialias) return antialiasTaps(o, inN, ratio, g.mode === 'bicubic');
  if (g.mode === 'bilinear') return bilinearTaps(o, inN, outN, ratio, g.alignCorners);
  if (g.mode === 'bicubic') return bicubicTaps(o, inN, ratio, g.alignCorners);
  if (g.mode === 'nearest') return nearestTaps(o, inN, ratio);
  const k = 2 * b + (axis === 0 ? 1 : 0); // (x, y) pairs
  return gridTaps(o, inN, outN, g.scale![k], g.offset![k]);
}

export function index(layout: Layout, C: number, H: number, W: number, b: number, c: number, y: number, x: number): number {
  return layout === 'NCHW' ? ((b * C + c) * H + y) * W + x : ((b * H + y) * W + x) * C + c;
}

/** out = sample(x) in float64; in grid mode all samples read the one input map. */
export function refForward(g: RefGeometry, x: ArrayLike<number>): Float64Array {
  const { layout, batch: B, channels: C, inH, inW, outH, outW } = g;
  const out = new Float64Array(B * C * outH * outW);
  for (let b = 0; b < B; b++) {
    const kept = g.mode !== 'grid' || g.keep![b] !== 0;
    const bi = g.mode === 'grid' ? 0 : b;
    const ty = Array.from({ length: outH }, (_, o) => axisTaps(g, 0, b, o));
    const tx = Array.from({ length: outW }, (_, o) => axisTaps(g, 1, b, o));
    for (let oy = 0; oy < outH; oy++)
      for (let ox = 0; ox < outW; ox++)
        for (let c = 0; c < C; c++) {
          let v = 0;
          if (kept)
            for (const [iy, wy] of ty[oy])
              for (const [ix, wx] of tx[ox]) v += wy * wx * x[index(layout, C, inH, inW, bi, c, iy, ix)];
          out[index(layout, C, outH, outW, b, c, oy, ox)] = v;
        }
  }
  return out;
}

/** Spec §1.4 eval, in its own two steps: resize [1, G*G, D] to m × m (m = max side), then keep the top-left corner. */
export function refCpe(pe: ArrayLike<number>, G: number, D: number, gridH: number, gridW: number, alignCorners: boolean): Float64Array {
  if (gridH === G && gridW === G) return Float64Array.from(pe);
  const m = Math.max(gridH, gridW);
  const full = refForward({ layout: 'NLC', mode: 'bilinear', alignCorners, batch: 1, channels: D, inH: G, inW: G, outH: m, outW: m }, pe);
  return cropTokens(full, m, D, gridH, gridW);
}

/** The top-left h × w tokens of a [1, H*W, D] token map W tokens wide. */
export function cropTokens(t: ArrayLike<number>, W: number, D: number, h: number, w: number): Float64Array {
  const out = new Float64Array(h * w * D);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) for (let d = 0; d < D; d++) out[(y * w + x) * D + d] = t[(y * W + x) * D + d];
  return out;
}

/** Σ out · weight, the scalar whose gradient the tests compare. */
export function weightedSum(out: ArrayLike<number>, weight: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < out.length; i++) s += out[i] * weight[i];
  return s;
}
