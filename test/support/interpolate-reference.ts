// Naive float64 references for the interpolation ops: every output element is a weighted sum of input elements,
// with the source coordinates written out the way PyTorch and RADIO define them.

export type Layout = 'NCHW' | 'NLC';

export interface RefGeometry {
  layout: Layout;
  /** 'grid' is RADIO's training crop: grid_sample, bilinear, zeros padding, align_corners true. */
  mode: 'bilinear' | 'nearest' | 'grid';
  alignCorners: boolean;
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

function bilinearTaps(o: number, inN: number, outN: number, align: boolean): Taps {
  let src: number;
  if (align) src = outN > 1 ? (o * (inN - 1)) / (outN - 1) : 0;
  else src = Math.max(((o + 0.5) * inN) / outN - 0.5, 0);
  const i0 = Math.min(Math.floor(src), inN - 1);
  const i1 = Math.min(i0 + 1, inN - 1);
  const w1 = src - i0;
  return [[i0, 1 - w1], [i1, w1]];
}

// PyTorch's legacy nearest computes floor(o · ratio) with the ratio and the product in float32.
function nearestTaps(o: number, inN: number, outN: number): Taps {
  const ratio = Math.fround(inN / outN);
  return [[Math.min(Math.floor(Math.fround(o * ratio)), inN - 1), 1]];
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
  if (g.mode === 'bilinear') return bilinearTaps(o, inN, outN, g.alignCorners);
  if (g.mode === 'nearest') return nearestTaps(o, inN, outN);
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
