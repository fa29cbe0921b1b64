// Plain float64 references of BatchNorm2d (PyTorch's batch_norm, with its running-stat update) and LayerNorm2d
// (SAM's), and their analytic gradients, for test/batchnorm.test.ts. NCHW arrays, flat and row-major.

// NCHW dims: [N, C] is [N, C, 1, 1].
export const dimsOf = (shape: number[]) => ({ n: shape[0], c: shape[1], hw: (shape[2] ?? 1) * (shape[3] ?? 1) });

export interface BnParams {
  w?: Float64Array;
  b?: Float64Array;
  rm?: Float64Array;
  rv?: Float64Array;
  training: boolean;
  momentum: number;
  eps: number;
}

// PyTorch's batch_norm in float64: y, the statistics used (mean, 1/√(var + eps)), and the updated running stats.
export function refBatchNorm(x: Float64Array, shape: number[], p: BnParams) {
  const { n, c, hw } = dimsOf(shape);
  const count = n * hw;
  const mean = new Float64Array(c);
  const invstd = new Float64Array(c);
  const rm = p.rm && Float64Array.from(p.rm);
  const rv = p.rv && Float64Array.from(p.rv);
  for (let ch = 0; ch < c; ch++) {
    let m = 0;
    let v = 0;
    if (p.training) {
      for (let i = 0; i < n; i++) for (let q = 0; q < hw; q++) m += x[(i * c + ch) * hw + q];
      m /= count;
      for (let i = 0; i < n; i++) for (let q = 0; q < hw; q++) v += (x[(i * c + ch) * hw + q] - m) ** 2;
      v /= count;
      if (rm && rv) {
        rm[ch] = (1 - p.momentum) * rm[ch] + p.momentum * m;
        rv[ch] = (1 - p.momentum) * rv[ch] + (p.momentum * v * count) / (count - 1);
      }
    } else {
      m = p.rm![ch];
      v = p.rv![ch];
    }
    mean[ch] = m;
    invstd[ch] = 1 / Math.sqrt(v + p.eps);
  }
  const y = x.map((v, i) => {
    const ch = Math.floor(i / hw) % c;
    return (v - mean[ch]) * invstd[ch] * (p.w ? p.w[ch] : 1) + (p.b ? p.b[ch] : 0);
  });
  return { y, mean, invstd, rm, rv };
}

// The analytic gradients of Σ y·r in float64 (the formulas of the brief, written independently of the kernels).
export function refBatchNormGrads(x: Float64Array, r: Float64Array, shape: number[], p: BnParams) {
  const { n, c, hw } = dimsOf(shape);
  const { mean, invstd } = refBatchNorm(x, shape, p);
  const ch = (i: number) => Math.floor(i / hw) % c;
  const xh = x.map((v, i) => (v - mean[ch(i)]) * invstd[ch(i)]);
  const dw = new Float64Array(c);
  const db = new Float64Array(c);
  r.forEach((g, i) => {
    dw[ch(i)] += g * xh[i];
    db[ch(i)] += g;
  });
  const count = n * hw;
  const dx = r.map((g, i) => {
    const k = ch(i);
    const w = p.w ? p.w[k] : 1;
    return p.training ? ((w * invstd[k]) / count) * (count * g - db[k] - xh[i] * dw[k]) : g * w * invstd[k];
  });
  return { dx, dw, db };
}

// LayerNorm2d in float64: over the channels of each pixel.
export function refLayerNorm2d(x: Float64Array, shape: number[], w: Float64Array, b: Float64Array, eps: number) {
  const { n, c, hw } = dimsOf(shape);
  const y = new Float64Array(x.length);
  for (let i = 0; i < n; i++)
    for (let q = 0; q < hw; q++) {
      const at = (ch: number) => (i * c + ch) * hw + q;
      let m = 0;
      for (let ch = 0; ch < c; ch++) m += x[at(ch)];
      m /= c;
      let v = 0;
      for (let ch = 0; ch < c; ch++) v += (x[at(ch)] - m) ** 2;
      const rs = 1 / Math.sqrt(v / c + eps);
      for (let ch = 0; ch < c; ch++) y[at(ch)] = (x[at(ch)] - m) * rs * w[ch] + b[ch];
    }
  return y;
}
