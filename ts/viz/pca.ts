// Principal components of a feature map, and the RGB colouring of them that RADIO's examples draw
// (examples/visualize_features.py: first three components → R, G, B, each scaled to its inlier range).
//
// Computed in float64 JS: the matrices are small (N ≤ a few thousand tokens, C ≤ ~1.5k channels). The top
// components come from block subspace iteration on XᵀX (X the centred features), never forming the C × C covariance,
// which would cost N·C² (seconds for ViT-H at 1024 px); each iteration costs 4·N·C·b with a block of b = k + 5.
// Rayleigh–Ritz on the b × b projection (cyclic Jacobi) separates the components, and the start block comes from a
// fixed-seed generator, so the result is the same on every run and every backend's features give comparable pictures.
import { Rng } from '../data/rng';

export interface PcaOptions {
  /** Components wanted (default 3). */
  components?: number;
  /** Stop when every wanted Ritz pair's residual ‖XᵀXu − θu‖ is below tol·θ₁ (default 1e-10). */
  tol?: number;
  /** Iteration cap (default 500); `converged` says whether tol was reached first. */
  maxIterations?: number;
}

export interface Pca {
  /** [C] the features' mean, subtracted before projecting. */
  mean: Float64Array;
  /** k unit vectors of length C, by decreasing variance; each signed so that its largest-magnitude entry is positive. */
  components: Float64Array[];
  /** The variance along each component (eigenvalues of the covariance, divisor N − 1; 0 for N = 1). */
  variances: number[];
  /** The total variance (trace of the covariance), so variances[i] / totalVariance is the explained fraction. */
  totalVariance: number;
  /** [N, k] row-major: each row's coordinates along the components (centred). */
  projections: Float64Array;
  iterations: number;
  converged: boolean;
}

function checkMatrix(op: string, data: ArrayLike<number>, n: number, c: number): void {
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(c) || c < 1) throw new Error(`${op}: rows and columns must be positive integers, got ${n} x ${c}`);
  if (!data || data.length !== n * c) throw new Error(`${op}: expected ${n} x ${c} = ${n * c} values, got ${data?.length}`);
  for (let i = 0; i < data.length; i++)
    if (!Number.isFinite(data[i])) throw new Error(`${op}: value ${data[i]} at row ${Math.floor(i / c)}, column ${i % c} is not finite`);
}

/** Cyclic Jacobi on a symmetric b × b matrix (row-major, overwritten): eigenvalues and eigenvectors (columns of V). */
function jacobiEigen(a: Float64Array, b: number): { values: Float64Array; vectors: Float64Array } {
  const v = new Float64Array(b * b);
  for (let i = 0; i < b; i++) v[i * b + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let p = 0; p < b; p++) {
      diag += a[p * b + p] ** 2;
      for (let q = p + 1; q < b; q++) off += a[p * b + q] ** 2;
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < b; p++)
      for (let q = p + 1; q < b; q++) {
        const apq = a[p * b + q];
        if (apq === 0) continue;
        const theta = (a[q * b + q] - a[p * b + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const cs = 1 / Math.sqrt(t * t + 1);
        const sn = t * cs;
        for (let k = 0; k < b; k++) {
          const akp = a[k * b + p];
          const akq = a[k * b + q];
          a[k * b + p] = cs * akp - sn * akq;
          a[k * b + q] = sn * akp + cs * akq;
        }
        for (let k = 0; k < b; k++) {
          const apk = a[p * b + k];
          const aqk = a[q * b + k];
          a[p * b + k] = cs * apk - sn * aqk;
          a[q * b + k] = sn * apk + cs * aqk;
        }
        for (let k = 0; k < b; k++) {
          const vkp = v[k * b + p];
          const vkq = v[k * b + q];
          v[k * b + p] = cs * vkp - sn * vkq;
          v[k * b + q] = sn * vkp + cs * vkq;
        }
      }
  }
  const values = new Float64Array(b);
  for (let i = 0; i < b; i++) values[i] = a[i * b + i];
  return { values, vectors: v };
}

/**
 * Orthonormalises the b columns of the C × b block q (row-major) in place, by modified Gram–Schmidt done twice
 * (one pass loses orthogonality when columns are nearly dependent). A column with nothing left (the features have
 * rank below b) becomes zero; its Ritz value is then 0 and it is never among the wanted ones unless the variance is.
 */
function orthonormalize(q: Float64Array, c: number, b: number): void {
  for (let j = 0; j < b; j++) {
    let before = 0;
    for (let r = 0; r < c; r++) before += q[r * b + j] ** 2;
    for (let pass = 0; pass < 2; pass++)
      for (let i = 0; i < j; i++) {
        let dot = 0;
        for (let r = 0; r < c; r++) dot += q[r * b + i] * q[r * b + j];
        for (let r = 0; r < c; r++) q[r * b + j] -= dot * q[r * b + i];
      }
    let norm = 0;
    for (let r = 0; r < c; r++) norm += q[r * b + j] ** 2;
    const keep = norm > 1e-24 * before && norm > 0;
    const s = keep ? 1 / Math.sqrt(norm) : 0;
    for (let r = 0; r < c; r++) q[r * b + j] *= s;
  }
}

/**
 * The principal components of `n` rows of `c` features (row-major, e.g. a [1, N, C] feature map's values): the
 * top `components` eigenvectors of the covariance and each row's coordinates along them.
 */
export function pca(features: ArrayLike<number>, n: number, c: number, opts: PcaOptions = {}): Pca {
  const op = 'pca';
  checkMatrix(op, features, n, c);
  const k = opts.components ?? 3;
  if (!Number.isInteger(k) || k < 1 || k > c) throw new Error(`${op}: components must be an integer in [1, ${c}] (the feature count), got ${k}`);
  const tol = opts.tol ?? 1e-10;
  const maxIterations = opts.maxIterations ?? 500;
  const mean = new Float64Array(c);
  for (let i = 0; i < n; i++) for (let j = 0; j < c; j++) mean[j] += features[i * c + j];
  for (let j = 0; j < c; j++) mean[j] /= n;
  const x = new Float64Array(n * c);
  let total = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < c; j++) {
      const d = features[i * c + j] - mean[j];
      x[i * c + j] = d;
      total += d * d;
    }
  const b = Math.min(c, k + 5);
  let q = new Float64Array(c * b);
  const rng = new Rng(0x5ca1ab1e, 0);
  for (let i = 0; i < q.length; i++) q[i] = rng.uniform() - 0.5;
  orthonormalize(q, c, b);

  const w = new Float64Array(n * b);
  let z = new Float64Array(c * b);
  let ritz: { values: Float64Array; vectors: Float64Array } = { values: new Float64Array(b), vectors: new Float64Array(b * b) };
  let order: number[] = [];
  let iterations = 0;
  let converged = false;
  while (true) {
    // w = X q (N × b), z = Xᵀ w = XᵀX q (C × b).
    w.fill(0);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < c; j++) {
        const xv = x[i * c + j];
        if (xv === 0) continue;
        for (let l = 0; l < b; l++) w[i * b + l] += xv * q[j * b + l];
      }
    z.fill(0);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < c; j++) {
        const xv = x[i * c + j];
        if (xv === 0) continue;
        for (let l = 0; l < b; l++) z[j * b + l] += xv * w[i * b + l];
      }
    iterations++;
    // Rayleigh–Ritz: T = qᵀ XᵀX q = wᵀ w.
    const t = new Float64Array(b * b);
    for (let i = 0; i < n; i++)
      for (let l = 0; l < b; l++) for (let m = 0; m < b; m++) t[l * b + m] += w[i * b + l] * w[i * b + m];
    ritz = jacobiEigen(t, b);
    order = [...Array(b).keys()].sort((p, r) => ritz.values[r] - ritz.values[p]);
    // Residual of Ritz pair (θ, u = q y): XᵀX u − θ u = z y − θ q y.
    const top = Math.max(ritz.values[order[0]], 0);
    let worst = 0;
    for (let a = 0; a < k; a++) {
      const col = order[a];
      const theta = ritz.values[col];
      let res = 0;
      for (let r = 0; r < c; r++) {
        let zy = 0;
        let qy = 0;
        for (let l = 0; l < b; l++) {
          const y = ritz.vectors[l * b + col];
          zy += z[r * b + l] * y;
          qy += q[r * b + l] * y;
        }
        res += (zy - theta * qy) ** 2;
      }
      worst = Math.max(worst, Math.sqrt(res));
    }
    if (worst <= tol * top || top === 0) {
      converged = true;
      break;
    }
    if (iterations >= maxIterations) break;
    const next = z;
    z = q;
    q = next;
    orthonormalize(q, c, b);
  }

  const components: Float64Array[] = [];
  const variances: number[] = [];
  const denom = Math.max(n - 1, 1);
  for (let a = 0; a < k; a++) {
    const col = order[a];
    const u = new Float64Array(c);
    for (let r = 0; r < c; r++) {
      let s = 0;
      for (let l = 0; l < b; l++) s += q[r * b + l] * ritz.vectors[l * b + col];
      u[r] = s;
    }
    let big = 0;
    for (let r = 1; r < c; r++) if (Math.abs(u[r]) > Math.abs(u[big])) big = r;
    if (u[big] < 0) for (let r = 0; r < c; r++) u[r] = -u[r];
    components.push(u);
    variances.push(Math.max(ritz.values[col], 0) / denom);
  }
  const projections = new Float64Array(n * k);
  for (let i = 0; i < n; i++)
    for (let a = 0; a < k; a++) {
      let s = 0;
      const u = components[a];
      for (let j = 0; j < c; j++) s += x[i * c + j] * u[j];
      projections[i * k + a] = s;
    }
  return { mean, components, variances, totalVariance: total / denom, projections, iterations, converged };
}

function median(values: Float64Array): number {
  const s = Float64Array.from(values).sort();
  // torch.median (what RADIO's example calls) returns the lower of the two middle values, not their mean.
  return s[(s.length - 1) >> 1];
}

/**
 * Maps each of the k columns of [N, k] projections to [0, 1] as RADIO's get_robust_pca does: the range is the
 * min and max over the inliers, the values within m (default 2) median absolute deviations of the median; values
 * outside are clamped. A column whose deviations are all zero uses its whole range, and a constant column is 0.5.
 */
export function robustUnitRange(projections: Float64Array, n: number, k: number, m = 2): Float64Array {
  const out = new Float64Array(n * k);
  for (let a = 0; a < k; a++) {
    const col = new Float64Array(n);
    for (let i = 0; i < n; i++) col[i] = projections[i * k + a];
    const med = median(col);
    const dev = col.map((v) => Math.abs(v - med));
    const mdev = median(dev);
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < n; i++)
      if (mdev === 0 || dev[i] / mdev < m) {
        lo = Math.min(lo, col[i]);
        hi = Math.max(hi, col[i]);
      }
    for (let i = 0; i < n; i++) out[i * k + a] = hi > lo ? Math.min(1, Math.max(0, (col[i] - lo) / (hi - lo))) : 0.5;
  }
  return out;
}

/**
 * The PCA picture of a feature map: [N, C] features of a gh × gw token grid (raster order) → [gh·gw, 3] colours in
 * [0, 1], the first three principal components as R, G and B, robustly scaled (robustUnitRange).
 */
export function pcaColors(features: ArrayLike<number>, gh: number, gw: number, c: number): { colors: Float64Array; pca: Pca } {
  if (!Number.isInteger(gh) || !Number.isInteger(gw) || gh < 1 || gw < 1) throw new Error(`pcaColors: the grid must be positive integers, got ${gh} x ${gw}`);
  if (c < 3) throw new Error(`pcaColors: three components need at least 3 feature channels, got ${c}`);
  const p = pca(features, gh * gw, c, { components: 3 });
  return { colors: robustUnitRange(p.projections, gh * gw, 3), pca: p };
}
