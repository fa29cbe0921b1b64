// Reads a checkpoint's tensors into device tensors, each checked against the shape the config implies.
import { SafetensorsFile } from '../io/safetensors';
import type { DType, Device } from '../native';
import { tensor, Tensor } from '../tensor';

export class WeightReader {
  /** Every tensor made so far, so a failed load can free them all. */
  readonly made: Tensor[] = [];

  constructor(
    readonly file: SafetensorsFile,
    /** 'radio_model.' for the HF layout. */
    readonly prefix: string,
    readonly device: Device,
    readonly dtype: DType,
  ) {}

  has(key: string): boolean {
    return this.file.has(this.prefix + key);
  }

  /** The values as f32 on the host, shape-checked. */
  async host(key: string, shape: readonly number[]): Promise<Float32Array> {
    return (await this.file.readFloat(this.prefix + key, shape)).data;
  }

  upload(data: Float32Array, shape: readonly number[], dtype: DType = this.dtype): Tensor {
    const t = tensor(data, shape, { device: this.device, dtype });
    this.made.push(t);
    return t;
  }

  /** A weight on the device in the model dtype (or `dtype`). */
  async load(key: string, shape: readonly number[], dtype: DType = this.dtype): Promise<Tensor> {
    return this.upload(await this.host(key, shape), shape, dtype);
  }

  async ints(key: string): Promise<number[]> {
    return (await this.file.readInts(this.prefix + key)).data;
  }
}

export interface LinearWeights {
  weight: Tensor;
  bias?: Tensor;
}

export interface NormWeights {
  weight: Tensor;
  bias: Tensor;
}

export async function loadLinear(r: WeightReader, key: string, out: number, inp: number, bias = true): Promise<LinearWeights> {
  return { weight: await r.load(`${key}.weight`, [out, inp]), bias: bias ? await r.load(`${key}.bias`, [out]) : undefined };
}

/** A linear whose output is scaled per channel (LayerScale), folded in: diag(s)·W and s ⊙ b. */
export async function loadScaledLinear(r: WeightReader, key: string, out: number, inp: number, scaleKey: string): Promise<LinearWeights> {
  const w = await r.host(`${key}.weight`, [out, inp]);
  const b = await r.host(`${key}.bias`, [out]);
  const s = await r.host(scaleKey, [out]);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inp; i++) w[o * inp + i] *= s[o];
    b[o] *= s[o];
  }
  return { weight: r.upload(w, [out, inp]), bias: r.upload(b, [out]) };
}

export async function loadNorm(r: WeightReader, key: string, dim: number): Promise<NormWeights> {
  return { weight: await r.load(`${key}.weight`, [dim]), bias: await r.load(`${key}.bias`, [dim]) };
}
