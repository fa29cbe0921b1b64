// A plain float64 RADIO ViT forward (spec §1.2–1.7, §2.1) for hand-built small checkpoints: written from the spec,
// loops only, with RADIO's own ViTDet token handling (prefix set aside, windows of the reordered sequence). It covers
// what the fixture does not: windowed blocks, LayerScale, the final norm. The position embedding is used at its own
// grid (gh = gw = G), so no resize is needed here.

import { refGelu as gelu } from './reference';

export type Weights = Record<string, { shape: number[]; data: Float64Array }>;

export interface RefConfig {
  D: number;
  heads: number;
  P: number;
  S: number;
  numCls: number;
  depth: number;
  windowSize: number;
  windowed: boolean[];
  summaryIdxs: number[];
  modelNorm: boolean;
  layerScale: boolean;
}

const w = (ws: Weights, k: string) => ws[k].data;

function layerNorm(x: Float64Array[], g: Float64Array, b: Float64Array, eps: number): Float64Array[] {
  return x.map((row) => {
    const mu = row.reduce((s, v) => s + v, 0) / row.length;
    const v = row.reduce((s, t) => s + (t - mu) ** 2, 0) / row.length;
    return row.map((t, i) => ((t - mu) / Math.sqrt(v + eps)) * g[i] + b[i]);
  });
}

function linear(x: Float64Array[], W: Float64Array, b: Float64Array | null, out: number): Float64Array[] {
  const k = x[0]?.length ?? 0;
  return x.map((row) => Float64Array.from({ length: out }, (_, o) => row.reduce((s, v, i) => s + v * W[o * k + i], b ? b[o] : 0)));
}


/** softmax(q·kᵀ/√dh)·v per head over one group of token rows (a whole sequence or one window). */
function attend(qkv: Float64Array[], heads: number, D: number): Float64Array[] {
  const dh = D / heads;
  const out = qkv.map(() => new Float64Array(D));
  for (let h = 0; h < heads; h++)
    qkv.forEach((qi, i) => {
      const logits = qkv.map((kj) => {
        let s = 0;
        for (let d = 0; d < dh; d++) s += qi[h * dh + d] * kj[D + h * dh + d];
        return s / Math.sqrt(dh);
      });
      const m = Math.max(...logits);
      const e = logits.map((l) => Math.exp(l - m));
      const z = e.reduce((a, b) => a + b, 0);
      qkv.forEach((vj, j) => {
        for (let d = 0; d < dh; d++) out[i][h * dh + d] += (e[j] / z) * vj[2 * D + h * dh + d];
      });
    });
  return out;
}

function block(ws: Weights, i: number, x: Float64Array[], groups: number[][], c: RefConfig): Float64Array[] {
  const k = `radio_model.model.blocks.${i}`;
  const { D } = c;
  const qkv = linear(layerNorm(x, w(ws, `${k}.norm1.weight`), w(ws, `${k}.norm1.bias`), 1e-6), w(ws, `${k}.attn.qkv.weight`), w(ws, `${k}.attn.qkv.bias`), 3 * D);
  const a = new Array<Float64Array>(x.length);
  for (const g of groups) attend(g.map((t) => qkv[t]), c.heads, D).forEach((row, j) => (a[g[j]] = row));
  const ls1 = c.layerScale ? w(ws, `${k}.ls1.grandma`) : null;
  const o = linear(a, w(ws, `${k}.attn.proj.weight`), w(ws, `${k}.attn.proj.bias`), D);
  const x1 = x.map((row, t) => row.map((v, d) => v + (ls1 ? ls1[d] : 1) * o[t][d]));
  const h = linear(layerNorm(x1, w(ws, `${k}.norm2.weight`), w(ws, `${k}.norm2.bias`), 1e-6), w(ws, `${k}.mlp.fc1.weight`), w(ws, `${k}.mlp.fc1.bias`), 4 * D).map((r) => r.map(gelu));
  const ls2 = c.layerScale ? w(ws, `${k}.ls2.grandma`) : null;
  const m = linear(h, w(ws, `${k}.mlp.fc2.weight`), w(ws, `${k}.mlp.fc2.bias`), D);
  return x1.map((row, t) => row.map((v, d) => v + (ls2 ? ls2[d] : 1) * m[t][d]));
}

/** One image [3, H, W] (values in [0, 1]) → summary [len(summaryIdxs)·D] and features [N][D]. */
export function refRadio(ws: Weights, image: Float64Array, H: number, W: number, c: RefConfig): { summary: number[]; features: Float64Array[] } {
  const { D, P, S } = c;
  const gh = H / P;
  const gw = W / P;
  const N = gh * gw;
  const mean = w(ws, 'radio_model.input_conditioner.norm_mean');
  const std = w(ws, 'radio_model.input_conditioner.norm_std');
  const patches = Array.from({ length: N }, (_, n) => {
    const row = new Float64Array(3 * P * P);
    for (let ch = 0; ch < 3; ch++)
      for (let yy = 0; yy < P; yy++)
        for (let xx = 0; xx < P; xx++) {
          const v = image[(ch * H + Math.floor(n / gw) * P + yy) * W + (n % gw) * P + xx];
          row[ch * P * P + yy * P + xx] = (v - mean[ch]) / std[ch];
        }
    return row;
  });
  const pe = w(ws, 'radio_model.model.patch_generator.pos_embed');
  const tokens = linear(patches, w(ws, 'radio_model.model.patch_generator.embedder.weight'), null, D).map((r, n) => r.map((v, d) => v + pe[n * D + d]));
  const cls = w(ws, 'radio_model.model.patch_generator.cls_token.token');
  let x: Float64Array[] = [...Array.from({ length: S }, (_, s) => cls.slice(s * D, (s + 1) * D)), ...tokens];
  // ViTDet as vitdet.py does it: reorder the patches window by window once, set the prefix aside while windowed.
  const ws2 = c.windowSize;
  const order: number[] = [];
  for (let wy = 0; wy < gh / ws2; wy++)
    for (let wx = 0; wx < gw / ws2; wx++)
      for (let py = 0; py < ws2; py++) for (let px = 0; px < ws2; px++) order.push((wy * ws2 + py) * gw + wx * ws2 + px);
  x = [...x.slice(0, S), ...order.map((n) => x[S + n])];
  let prefix: Float64Array[] | null = null;
  for (let i = 0; i < c.depth; i++) {
    if (c.windowed[i] && !prefix) {
      prefix = x.slice(0, S);
      x = x.slice(S);
    } else if (!c.windowed[i] && prefix) {
      x = [...prefix, ...x];
      prefix = null;
    }
    const groups = c.windowed[i]
      ? Array.from({ length: x.length / (ws2 * ws2) }, (_, g) => Array.from({ length: ws2 * ws2 }, (_, j) => g * ws2 * ws2 + j))
      : [Array.from({ length: x.length }, (_, t) => t)];
    x = block(ws, i, x, groups, c);
  }
  if (c.modelNorm) x = layerNorm(x, w(ws, 'radio_model.model.norm.weight'), w(ws, 'radio_model.model.norm.bias'), 1e-6);
  const features = new Array<Float64Array>(N);
  order.forEach((n, j) => (features[n] = x[S + j]));
  return { summary: c.summaryIdxs.flatMap((i) => Array.from(x[i])), features };
}
