// Position embeddings of the patch grid (spec §1.4): the eval CPE, the training crop with position dropout, the
// non-CPE-mode corner crop, and the seeded draw of the training crop with RADIO's distribution
// (vit_patch_generator.py, `_get_pos_embeddings` and `apply_pos_enc`).
import { cpe, cpeTrain, interpolate } from '../ops/interpolate';
import { gatherRows } from '../ops/tokens';
import type { Device } from '../native';
import { tensor, Tensor } from '../tensor';

export interface CpeGeometry {
  /** G: the table is G × G. */
  grid: number;
  cpeMode: boolean;
  alignCorners: boolean;
}

/** A training crop to replay: scale and offset [B, 2] (x, y) f32, keep [B] f32 (1 kept, 0 dropped). */
export interface CpeCrop {
  scale?: Tensor;
  offset?: Tensor;
  keep: Tensor;
}

/** Whether a training forward at gridH × gridW takes a random crop: only in CPE mode, and not at the full table. */
export function cropApplies(g: CpeGeometry, gridH: number, gridW: number): boolean {
  return g.cpeMode && !(gridH === g.grid && gridW === g.grid);
}

/** [1, gridH·gridW, D]: what eval adds to every sample. */
export function evalPositions(posEmbed: Tensor, g: CpeGeometry, gridH: number, gridW: number): Tensor {
  if (g.cpeMode || (gridH === g.grid && gridW === g.grid)) return cpe(posEmbed, { gridH, gridW, alignCorners: g.alignCorners });
  // Not CPE mode: the table's top-left corner, resized only when the grid is larger than the table on some axis.
  const h = Math.min(gridH, g.grid);
  const w = Math.min(gridW, g.grid);
  const rows = gatherRows(posEmbed, Int32Array.from({ length: h * w }, (_, i) => Math.floor(i / w) * g.grid + (i % w)));
  if (h === gridH && w === gridW) return rows;
  return interpolate(rows, { layout: 'NLC', grid: [h, w], size: [gridH, gridW], alignCorners: g.alignCorners });
}

/** pos [1, N, D] repeated for each of keep's B samples and zeroed where keep is 0: [B, N, D]. */
function dropPositions(pos: Tensor, keep: Tensor): Tensor {
  const [, N, D] = pos.shape;
  const B = keep.shape[0];
  const tiled = gatherRows(pos, Int32Array.from({ length: B * N }, (_, i) => i % N)).reshape([B, N, D]);
  const k = keep.dtype === pos.dtype ? keep : keep.cast(pos.dtype);
  const mask = gatherRows(k.reshape([B, 1, 1]), new Int32Array(N * D)).reshape([B, N, D]);
  return tiled.mul(mask);
}

/** [B, gridH·gridW, D]: the training position encodings of each sample, with its crop and position dropout. */
export function trainPositions(posEmbed: Tensor, g: CpeGeometry, gridH: number, gridW: number, crop: CpeCrop): Tensor {
  if (cropApplies(g, gridH, gridW)) return cpeTrain(posEmbed, { gridH, gridW, scale: crop.scale!, offset: crop.offset!, keep: crop.keep });
  return dropPositions(evalPositions(posEmbed, g, gridH, gridW), crop.keep);
}

/** Checks a crop given to a training forward of batch B at gridH × gridW. */
export function checkCrop(op: string, crop: unknown, g: CpeGeometry, B: number, gridH: number, gridW: number, device: Device): CpeCrop {
  if (!crop || typeof crop !== 'object') throw new Error(`${op}: opts.cpe must be { scale, offset, keep }`);
  const c = crop as CpeCrop;
  const need = cropApplies(g, gridH, gridW);
  const check = (name: 'scale' | 'offset' | 'keep', shape: number[]) => {
    const t = c[name];
    if (!(t instanceof Tensor)) throw new Error(`${op}: opts.cpe.${name} must be an f32 Tensor [${shape.join(', ')}]`);
    t.native(op);
    if (t.dtype !== 'f32' || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      throw new Error(`${op}: opts.cpe.${name} must be an f32 Tensor [${shape.join(', ')}], got ${t}`);
    if (t.device !== device) throw new Error(`${op}: opts.cpe.${name} is on ${t.device}, the model on ${device}`);
  };
  check('keep', [B]);
  if (need) {
    check('scale', [B, 2]);
    check('offset', [B, 2]);
  } else if (c.scale !== undefined || c.offset !== undefined) {
    const why = g.cpeMode ? `the grid ${gridH}x${gridW} is the whole ${g.grid}x${g.grid} table` : 'the checkpoint is not in CPE mode';
    throw new Error(`${op}: opts.cpe.scale/offset given, but RADIO takes no crop here (${why}); pass only keep`);
  }
  return c;
}

/** mulberry32: a small, fast generator whose stream depends only on the seed. */
export class CropRng {
  private state: number;

  static check(seed: number): void {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative safe integer, got ${seed}`);
  }

  constructor(seed: number) {
    CropRng.check(seed);
    this.state = ((seed % 2 ** 32) ^ Math.imul(Math.floor(seed / 2 ** 32), 0x9e3779b9)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }
}

/**
 * RADIO's training draw, in its order: per sample a side scale s ~ U[√0.1, 1) and an aspect a = exp(U[log ¾, log ⁴⁄₃));
 * (sx, sy) = (s·a, s/a) clamped to [0, 1]; the corner (px, py) ~ U[0,1)·(1 − s_xy); then keep = U[0,1) > pDrop.
 * Without a crop (see cropApplies) only keep is drawn, as RADIO does.
 */
export function drawCrop(rng: CropRng, B: number, withCrop: boolean, posDropout: number, device: Device): CpeCrop {
  const out: CpeCrop = { keep: undefined as unknown as Tensor };
  if (withCrop) {
    const minScale = Math.sqrt(0.1);
    const s = Array.from({ length: B }, () => rng.next() * (1 - minScale) + minScale);
    const aMin = Math.log(3 / 4);
    const a = Array.from({ length: B }, () => Math.exp(rng.next() * (-aMin - aMin) + aMin));
    const scale = new Float32Array(2 * B);
    for (let b = 0; b < B; b++) {
      scale[2 * b] = Math.min(Math.max(s[b] * a[b], 0), 1);
      scale[2 * b + 1] = Math.min(Math.max(s[b] / a[b], 0), 1);
    }
    const offset = Float32Array.from({ length: 2 * B }, (_, i) => rng.next() * (1 - scale[i]));
    out.scale = tensor(scale, [B, 2], { device });
    out.offset = tensor(offset, [B, 2], { device });
  }
  const keep = Float32Array.from({ length: B }, () => (posDropout > 0 ? (rng.next() > posDropout ? 1 : 0) : 1));
  out.keep = tensor(keep, [B], { device });
  return out;
}
