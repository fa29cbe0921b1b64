// The layers the RADIO models are made of, each a thin module over one op: Linear (the GEMM with its fused bias,
// activation and residual epilogue), LayerNorm, GELU, LayerScale. Parameters are made uninitialised (to be filled
// from a checkpoint) or with PyTorch's default initialisation.
import type { DType, Device } from '../native';
import { linear, LinearOptions } from '../ops/linear';
import { gelu } from '../ops/activation';
import { layerNorm } from '../ops/norm';
import { noGrad } from '../autograd';
import { tidy } from '../scope';
import { emptyTensor, full, rand, randn, Tensor } from '../tensor';
import { scaleLastDim } from './broadcast';
import { Module } from './module';
import { Parameter } from './parameter';

export interface LayerOptions {
  device?: Device;
  dtype?: DType;
  /** 'default' (PyTorch's initialisation, the default) or 'empty' (uninitialised: values come from a checkpoint). */
  init?: 'default' | 'empty';
  /** Optional seed of the random initialisation. */
  seed?: number;
}

function dims(op: string, ...ds: number[]): void {
  for (const d of ds) if (!Number.isInteger(d) || d <= 0) throw new Error(`${op}: sizes must be positive integers, got ${ds.join(', ')}`);
}

/** A parameter of shape: uninitialised, filled with value, or uniform in ±bound (normal·std with normal). */
export function makeParameter(shape: number[], opts: LayerOptions, value: { fill?: number; uniform?: number; normal?: number }): Parameter {
  const o = { device: opts.device ?? 'cpu', dtype: opts.dtype ?? 'f32' } as const;
  if (o.dtype === 'i32') throw new Error('parameters must be f32 or bf16');
  const t = noGrad(() => tidy(() => {
    if ((opts.init ?? 'default') === 'empty') return emptyTensor(shape, o.dtype, o.device);
    if (value.fill !== undefined) return full(shape, value.fill, o);
    if (value.normal !== undefined) {
      return randn(shape, { ...o, seed: opts.seed }).scale(value.normal);
    }
    return rand(shape, { ...o, seed: opts.seed }).scale(2 * value.uniform!).sub(full(shape, value.uniform!, o));
  }));
  return Parameter.from(t);
}

/** y = x·Wᵀ + b, W [out, in] (PyTorch's layout); keys `weight`, `bias`. */
export class Linear extends Module {
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: LayerOptions & { bias?: boolean } = {}) {
    super();
    dims('Linear', inFeatures, outFeatures);
    const bound = 1 / Math.sqrt(inFeatures);
    this.registerParameter('weight', makeParameter([outFeatures, inFeatures], opts, { uniform: bound }));
    if (opts.bias ?? true) this.registerParameter('bias', makeParameter([outFeatures], { ...opts, seed: opts.seed === undefined ? undefined : opts.seed + 1 }, { uniform: bound }));
  }

  get weight(): Parameter {
    return this.param('weight');
  }
  get bias(): Parameter | undefined {
    return this.hasParameter('bias') ? this.param('bias') : undefined;
  }

  /** With the GEMM's fused epilogue: act(x·Wᵀ + b) + residual. */
  forward(x: Tensor, opts: LinearOptions = {}): Tensor {
    return linear(x, this.weight, this.bias, opts);
  }
}

/**
 * LayerNorm over the last dimension with affine weight and bias (keys `weight`, `bias`). The parameters are f32 in
 * a bf16 model too (mixed precision, as autocast runs norms): see ops.layerNorm.
 */
export class LayerNorm extends Module {
  constructor(readonly dim: number, readonly eps: number, opts: LayerOptions = {}) {
    super();
    dims('LayerNorm', dim);
    if (!(eps > 0)) throw new Error(`LayerNorm: eps must be positive, got ${eps}`);
    const f32 = { ...opts, dtype: 'f32' as const };
    this.registerParameter('weight', makeParameter([dim], f32, { fill: 1 }));
    this.registerParameter('bias', makeParameter([dim], f32, { fill: 0 }));
  }

  get weight(): Parameter {
    return this.param('weight');
  }
  get bias(): Parameter {
    return this.param('bias');
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/** The exact (erf) GELU; no parameters (it holds a slot in a Sequential, as in PyTorch). */
export class Gelu extends Module {
  forward(x: Tensor): Tensor {
    return gelu(x);
  }
}

/** x ⊙ γ per channel; RADIO names the parameter `grandma` (spec §1.6), timm `gamma`. */
export class LayerScale extends Module {
  private readonly key: string;

  constructor(readonly dim: number, initValue: number, opts: LayerOptions & { name?: string } = {}) {
    super();
    dims('LayerScale', dim);
    this.key = opts.name ?? 'grandma';
    this.registerParameter(this.key, makeParameter([dim], opts, { fill: initValue }));
  }

  get gamma(): Parameter {
    return this.param(this.key);
  }

  forward(x: Tensor): Tensor {
    return scaleLastDim(x, this.gamma);
  }
}
