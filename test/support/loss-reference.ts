// Naive float64 reference of the multi-teacher loss (spec §3, §4.1), written for obviousness, not speed.
// Tensors are flat row-major arrays: summaries [B, C], features [B, h*w, C].

export interface RefSide {
  summary?: Float64Array;
  features?: Float64Array;
  grid?: [number, number];
}
export interface RefTerm {
  batch: number;
  summaryChannels?: number;
  featureChannels?: number;
  student: RefSide;
  teacher: RefSide;
  summaryWeight?: number;
  featureWeight?: number;
}
export interface RefOptions {
  mode?: 'cosine+smoothl1' | 'mse';
  alpha?: number;
  beta?: number;
  delta?: number;
}
export interface RefResult {
  total: number;
  terms: Array<{ summary?: number; features?: number }>;
  /** The size of what each value is computed from: 1 - cos is formed from a cosine of magnitude up to 1, so its f32
   * rounding is relative to 1 + |cos|, not to the (possibly tiny) difference. Same shape as total / terms. */
  scale: { total: number; terms: Array<{ summary?: number; features?: number }> };
}

const EPS = 1e-8;

/** PyTorch's bilinear source taps for align_corners=False: scale = in/out, source clamped at 0. */
export function taps(inSize: number, outSize: number, o: number): [number, number, number, number] {
  const scale = inSize / outSize;
  const src = Math.max(scale * (o + 0.5) - 0.5, 0);
  const i0 = Math.floor(src);
  const i1 = i0 < inSize - 1 ? i0 + 1 : i0;
  const l1 = src - i0;
  return [i0, i1, 1 - l1, l1];
}

/** F.interpolate(mode='bilinear', align_corners=False) of one [h, w, C] map to [H, W, C]. */
export function resize(x: Float64Array, offset: number, h: number, w: number, C: number, H: number, W: number): Float64Array {
  const out = new Float64Array(H * W * C);
  for (let i = 0; i < H; i++) {
    const [y0, y1, wy0, wy1] = taps(h, H, i);
    for (let j = 0; j < W; j++) {
      const [x0, x1, wx0, wx1] = taps(w, W, j);
      for (let c = 0; c < C; c++) {
        const at = (yy: number, xx: number) => x[offset + (yy * w + xx) * C + c];
        const top = wx0 * at(y0, x0) + wx1 * at(y0, x1);
        const bottom = wx0 * at(y1, x0) + wx1 * at(y1, x1);
        out[(i * W + j) * C + c] = wy0 * top + wy1 * bottom;
      }
    }
  }
  return out;
}

/** F.cosine_similarity with eps clamping each norm. */
function cosine(a: Float64Array, ao: number, b: Float64Array, bo: number, C: number): number {
  let dot = 0;
  let aa = 0;
  let bb = 0;
  for (let c = 0; c < C; c++) {
    dot += a[ao + c] * b[bo + c];
    aa += a[ao + c] ** 2;
    bb += b[bo + c] ** 2;
  }
  return dot / (Math.max(Math.sqrt(aa), EPS) * Math.max(Math.sqrt(bb), EPS));
}

function smoothL1(d: number, delta: number): number {
  const a = Math.abs(d);
  return a < delta ? (0.5 * d * d) / delta : a - 0.5 * delta;
}

export function referenceLoss(terms: RefTerm[], opts: RefOptions = {}): RefResult {
  const mode = opts.mode ?? 'cosine+smoothl1';
  const alpha = opts.alpha ?? 0.9;
  const beta = opts.beta ?? 0.1;
  const delta = opts.delta ?? 1;
  let total = 0;
  let totalScale = 0;
  const out: RefResult['terms'] = [];
  const scales: RefResult['terms'] = [];
  for (const t of terms) {
    const r: { summary?: number; features?: number } = {};
    const sc: { summary?: number; features?: number } = {};
    const B = t.batch;
    if (t.student.summary && t.teacher.summary) {
      const C = t.summaryChannels!;
      let s = 0;
      let size = 0;
      for (let b = 0; b < B; b++) {
        const c = cosine(t.student.summary, b * C, t.teacher.summary, b * C, C);
        s += 1 - c;
        size += 1 + Math.abs(c);
      }
      r.summary = s / B;
      sc.summary = size / B;
      total += (t.summaryWeight ?? 1) * r.summary;
      totalScale += Math.abs(t.summaryWeight ?? 1) * sc.summary;
    }
    if (t.student.features && t.teacher.features) {
      const C = t.featureChannels!;
      const [hs, ws] = t.student.grid!;
      const [ht, wt] = t.teacher.grid!;
      const H = Math.max(hs, ht);
      const W = Math.max(ws, wt);
      let cos = 0;
      let cosSize = 0;
      let elem = 0;
      for (let b = 0; b < B; b++) {
        const f = resize(t.student.features, b * hs * ws * C, hs, ws, C, H, W);
        const g = resize(t.teacher.features, b * ht * wt * C, ht, wt, C, H, W);
        for (let p = 0; p < H * W; p++) {
          const c = cosine(f, p * C, g, p * C, C);
          cos += 1 - c;
          cosSize += 1 + Math.abs(c);
          for (let c = 0; c < C; c++) {
            const d = f[p * C + c] - g[p * C + c];
            elem += mode === 'mse' ? d * d : smoothL1(d, delta);
          }
        }
      }
      const tokens = B * H * W;
      r.features = mode === 'mse' ? elem / (tokens * C) : (alpha * cos) / tokens + (beta * elem) / (tokens * C);
      sc.features = mode === 'mse' ? r.features : (Math.abs(alpha) * cosSize) / tokens + (Math.abs(beta) * elem) / (tokens * C);
      total += (t.featureWeight ?? 1) * r.features;
      totalScale += Math.abs(t.featureWeight ?? 1) * sc.features;
    }
    out.push(r);
    scales.push(sc);
  }
  return { total, terms: out, scale: { total: totalScale, terms: scales } };
}

/** Central differences of f at the listed indices of x (all when none are listed), perturbing x in place: the
 * reference terms hold x itself, so f reads the perturbed values through them (x is restored after each). */
export function differences(f: (x: Float64Array) => number, x: Float64Array, indices?: number[], h = 1e-6): Float64Array {
  const idx = indices ?? Array.from({ length: x.length }, (_, i) => i);
  const g = new Float64Array(idx.length);
  idx.forEach((i, k) => {
    const v = x[i];
    x[i] = v + h;
    const fp = f(x);
    x[i] = v - h;
    const fm = f(x);
    x[i] = v;
    g[k] = (fp - fm) / (2 * h);
  });
  return g;
}

/** The size of the summary gradient's parts: d(1 - cos)/ds = -(t̂ - cos·ŝ)/|s| is a difference of two vectors of
 * norms 1/|s| and |cos|/|s| that cancel as s and t turn (anti)parallel, while f32 rounds each part. Returns the norm
 * over the batch of (weight/B)·(1 + |cos|)/|s|, the bound an error of the gradient is weighed against there. */
export function summaryGradientScale(t: RefTerm): number {
  const C = t.summaryChannels!;
  const B = t.batch;
  const w = Math.abs(t.summaryWeight ?? 1) / B;
  let sq = 0;
  for (let b = 0; b < B; b++) {
    const c = cosine(t.student.summary!, b * C, t.teacher.summary!, b * C, C);
    let n = 0;
    for (let i = 0; i < C; i++) n += t.student.summary![b * C + i] ** 2;
    sq += (w * (1 + Math.abs(c))) / Math.max(Math.sqrt(n), EPS) ** 2 * (w * (1 + Math.abs(c)));
  }
  return Math.sqrt(sq);
}
