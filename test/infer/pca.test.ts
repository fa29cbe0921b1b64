// PCA of feature maps (subspace iteration + Rayleigh–Ritz in ts/viz/pca.ts) against a float64 reference computed
// here by another method: the full covariance matrix, then power iteration with deflation. Plus the RGB scaling
// of RADIO's example (median / MAD inliers), the bilinear upsampling and the side-by-side picture.
import { pca, pcaColors, robustUnitRange } from '../../ts/viz/pca';
import { resizeBilinear, sideBySide } from '../../ts/viz/picture';

/** A deterministic generator (not the one pca.ts seeds itself with). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/**
 * n rows of c features: mean + Σ_a scale[a]·score_a(i)·v_a + noise, with orthonormal v_a. So the top components are
 * (close to) v_0, v_1, v_2 with variances falling off as scale², well separated.
 */
function structured(n: number, c: number, scales: number[], noise: number, seed: number): { x: Float64Array; v: Float64Array[] } {
  const r = lcg(seed);
  const v: Float64Array[] = [];
  for (let a = 0; a < scales.length; a++) {
    const u = Float64Array.from({ length: c }, r);
    for (const w of v) {
      const d = u.reduce((s, ui, j) => s + ui * w[j], 0);
      for (let j = 0; j < c; j++) u[j] -= d * w[j];
    }
    const norm = Math.hypot(...u);
    v.push(u.map((ui) => ui / norm));
  }
  const mean = Float64Array.from({ length: c }, () => 3 * r());
  const x = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    const scores = scales.map((s) => s * r());
    for (let j = 0; j < c; j++) {
      let val = mean[j] + noise * r();
      for (let a = 0; a < scales.length; a++) val += scores[a] * v[a][j];
      x[i * c + j] = val;
    }
  }
  return { x, v };
}

/** The reference: covariance (divisor n − 1), then k rounds of power iteration, each deflating the pair found. */
function referencePca(x: Float64Array, n: number, c: number, k: number): { vectors: Float64Array[]; values: number[] } {
  const mean = new Float64Array(c);
  for (let i = 0; i < n; i++) for (let j = 0; j < c; j++) mean[j] += x[i * c + j] / n;
  const cov = new Float64Array(c * c);
  for (let i = 0; i < n; i++)
    for (let p = 0; p < c; p++)
      for (let q = 0; q < c; q++) cov[p * c + q] += ((x[i * c + p] - mean[p]) * (x[i * c + q] - mean[q])) / (n - 1);
  const vectors: Float64Array[] = [];
  const values: number[] = [];
  const r = lcg(99);
  for (let a = 0; a < k; a++) {
    let v = Float64Array.from({ length: c }, r);
    let lambda = 0;
    for (let it = 0; it < 20000; it++) {
      const w = new Float64Array(c);
      for (let p = 0; p < c; p++) for (let q = 0; q < c; q++) w[p] += cov[p * c + q] * v[q];
      const norm = Math.hypot(...w);
      const next = w.map((wi) => wi / norm);
      const change = Math.hypot(...next.map((ni, j) => ni - v[j]));
      v = next;
      lambda = norm;
      if (change < 1e-14) break;
    }
    vectors.push(v);
    values.push(lambda);
    for (let p = 0; p < c; p++) for (let q = 0; q < c; q++) cov[p * c + q] -= lambda * v[p] * v[q];
  }
  return { vectors, values };
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

describe('pca', () => {
  test.each([
    [300, 16, 'more rows than features'],
    [40, 120, 'more features than rows'],
  ])('matches covariance + power iteration (%i x %i, %s)', (n, c) => {
    const { x, v } = structured(n, c, [10, 6, 3, 1, 0.5], 0.05, n + c);
    const p = pca(x, n, c);
    const ref = referencePca(x, n, c, 3);
    expect(p.converged).toBe(true);
    for (let a = 0; a < 3; a++) {
      expect(Math.abs(dot(p.components[a], ref.vectors[a]))).toBeGreaterThan(1 - 1e-9);
      expect(Math.abs(p.variances[a] - ref.values[a]) / ref.values[a]).toBeLessThan(1e-9);
      // ...and both found the directions the data was built from.
      expect(Math.abs(dot(p.components[a], v[a]))).toBeGreaterThan(0.95);
    }
  });

  test('components are orthonormal, by decreasing variance, signed by their largest entry; projections are the centred coordinates', () => {
    const n = 200;
    const c = 24;
    const { x } = structured(n, c, [5, 4, 2, 1], 0.1, 7);
    const p = pca(x, n, c, { components: 4 });
    for (let a = 0; a < 4; a++) {
      expect(Math.abs(dot(p.components[a], p.components[a]) - 1)).toBeLessThan(1e-12);
      for (let b = a + 1; b < 4; b++) expect(Math.abs(dot(p.components[a], p.components[b]))).toBeLessThan(1e-10);
      if (a > 0) expect(p.variances[a]).toBeLessThan(p.variances[a - 1]);
      const u = p.components[a];
      const big = u.reduce((best, ui, j) => (Math.abs(ui) > Math.abs(u[best]) ? j : best), 0);
      expect(u[big]).toBeGreaterThan(0);
      // Projections: (x_i − mean)·u, with mean 0 and variance variances[a] along each component.
      let sum = 0;
      let sq = 0;
      for (let i = 0; i < n; i++) {
        const row = x.subarray(i * c, (i + 1) * c);
        const expected = dot(row.map((xi, j) => xi - p.mean[j]), u);
        expect(p.projections[i * 4 + a]).toBeCloseTo(expected, 10);
        sum += p.projections[i * 4 + a];
        sq += p.projections[i * 4 + a] ** 2;
      }
      expect(Math.abs(sum / n)).toBeLessThan(1e-10);
      expect(sq / (n - 1)).toBeCloseTo(p.variances[a], 8);
    }
    expect(p.variances.reduce((s, v) => s + v, 0)).toBeLessThan(p.totalVariance);
    // No direction explains more variance than the first component.
    const r = lcg(5);
    for (let trial = 0; trial < 50; trial++) {
      const d = Float64Array.from({ length: c }, r);
      const norm = Math.hypot(...d);
      let sq = 0;
      for (let i = 0; i < n; i++) sq += dot(x.subarray(i * c, (i + 1) * c).map((xi, j) => xi - p.mean[j]), d) ** 2;
      expect(sq / (n - 1) / norm ** 2).toBeLessThanOrEqual(p.variances[0] * (1 + 1e-12));
    }
  });

  test('deterministic: the same input gives bit-identical results', () => {
    const { x } = structured(100, 32, [3, 2, 1], 0.2, 11);
    expect(pca(x, 100, 32)).toEqual(pca(Float64Array.from(x), 100, 32));
    const f32 = Float32Array.from(x);
    expect(pca(f32, 100, 32)).toEqual(pca(Float32Array.from(x), 100, 32));
  });

  test('rank below three (two rows, constant features) gives zero variances, not an Error', () => {
    const c = 8;
    const two = Float64Array.from({ length: 2 * c }, (_, i) => (i < c ? i : 2 * (i - c)));
    const p = pca(two, 2, c);
    expect(p.converged).toBe(true);
    expect(p.variances[0]).toBeCloseTo(p.totalVariance, 10);
    expect(p.variances[1]).toBeLessThan(1e-12 * p.variances[0]);
    const flat = pcaColors(new Float32Array(6 * c).fill(0.25), 2, 3, c);
    expect(flat.pca.variances).toEqual([0, 0, 0]);
    expect([...flat.colors]).toEqual(new Array(18).fill(0.5));
  });

  test('bad input is an Error naming it', () => {
    expect(() => pca([1, 2, 3], 2, 2)).toThrow('expected 2 x 2 = 4 values, got 3');
    expect(() => pca([1, 2, NaN, 4], 2, 2)).toThrow('value NaN at row 1, column 0 is not finite');
    expect(() => pca([1, 2, 3, 4], 2, 2, { components: 3 })).toThrow('components must be an integer in [1, 2]');
    expect(() => pcaColors(new Float32Array(8), 2, 2, 2)).toThrow('at least 3 feature channels');
  });
});

describe('robustUnitRange', () => {
  test('scales to the inliers within 2 MADs of the median (lower medians, as torch.median), clamping the rest', () => {
    // median 5 (lower middle), |deviations| 4 3 2 1 0 1 2 3 4 95 → MAD 2; inliers have deviation < 4: 2..8.
    const col = Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 100]);
    const out = robustUnitRange(col, 10, 1);
    expect([...out]).toEqual([0, 0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1, 1, 1].map((v) => expect.closeTo(v, 12)));
    // Columns are scaled independently; a constant one is mid-grey.
    const two = Float64Array.from([0, 7, 10, 7, 20, 7]);
    expect([...robustUnitRange(two, 3, 2)]).toEqual([0, 0.5, 0.5, 0.5, 1, 0.5]);
  });

  test('pcaColors gives one colour in [0, 1] per token', () => {
    const { x } = structured(6 * 8, 20, [4, 3, 2], 0.1, 3);
    const { colors } = pcaColors(x, 6, 8, 20);
    expect(colors.length).toBe(48 * 3);
    for (const v of colors) expect(v >= 0 && v <= 1).toBe(true);
    expect(Math.min(...colors)).toBe(0);
    expect(Math.max(...colors)).toBe(1);
  });
});

describe('the picture', () => {
  test('resizeBilinear samples as PyTorch with align_corners=false', () => {
    // [[0, 1], [2, 3]] to 4 × 4: source coordinates 0, 0.25, 0.75, 1 along each axis (edges clamped).
    const out = resizeBilinear([0, 1, 2, 3], 2, 2, 1, 4, 4);
    const t = [0, 0.25, 0.75, 1];
    expect([...out]).toEqual(t.flatMap((ty) => t.map((tx) => tx + 2 * ty)));
    // Same size: unchanged.
    expect([...resizeBilinear([1, 2, 3, 4, 5, 6], 1, 2, 3, 1, 2)]).toEqual([1, 2, 3, 4, 5, 6]);
  });

  test('sideBySide puts the input left and the upsampled colours right, 2W × H bytes', () => {
    const h = 2;
    const w = 4;
    const pixels = Float32Array.from({ length: 3 * h * w }, (_, i) => (i % 8) / 7);
    // One token, pure green.
    const rgb = sideBySide(pixels, h, w, [0, 1, 0], 1, 1);
    expect(rgb.length).toBe(h * 2 * w * 3);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        for (let c = 0; c < 3; c++) expect(rgb[(y * 2 * w + x) * 3 + c]).toBe(Math.round(pixels[c * h * w + y * w + x] * 255));
        expect([...rgb.subarray((y * 2 * w + w + x) * 3, (y * 2 * w + w + x) * 3 + 3)]).toEqual([0, 255, 0]);
      }
  });
});
