// Adaptor heads (spec §4.3): RADIO's MLP v2, `[pre_norm: LN + GELU] → fc1 → (x + Linear(GELU(LN(x))))·num_inner →
// LN → GELU → Linear`, and the GenericAdaptor that pairs a summary head (head_mlp) with a feature head (feat_mlp).
// Every LayerNorm here uses eps 1e-5 (torch's default), unlike the backbone's 1e-6. Module and key names follow
// RADIO's: pre_norm.0, fc1, blocks.{k}.0 / .2, final.0 / .2 (the GELUs hold the odd Sequential slots).
import { Gelu, LayerNorm, LayerOptions, Linear } from '../nn/layers';
import { Module, ModuleList, Sequential } from '../nn/module';
import type { Tensor } from '../tensor';
import type { AdaptorConfig, MlpHeadConfig } from './config';

const EPS = 1e-5;

// LN → GELU → Linear, the shape of every MLP v2 stage; the norm and linear are kept typed for the fused calls.
class NormGeluLinear extends Sequential {
  readonly norm: LayerNorm;
  readonly linear: Linear;

  constructor(dim: number, out: number, opts: LayerOptions) {
    const norm = new LayerNorm(dim, EPS, opts);
    const linear = new Linear(dim, out, opts);
    super([norm, new Gelu(), linear]);
    this.norm = norm;
    this.linear = linear;
  }

  /** linear(GELU(LN(x))), with the residual (if any) fused into the GEMM. */
  apply(x: Tensor, residual?: Tensor): Tensor {
    return this.linear.forward((this.at(1) as Gelu).forward(this.norm.forward(x)), { residual });
  }
}

class NormGelu extends Sequential {
  constructor(dim: number, opts: LayerOptions) {
    super([new LayerNorm(dim, EPS, opts), new Gelu()]);
  }
}

export class MlpV2 extends Module {
  readonly preNorm: NormGelu | null;
  readonly fc1: Linear;
  readonly blocks: ModuleList<NormGeluLinear>;
  readonly final: NormGeluLinear;

  constructor(readonly config: MlpHeadConfig, opts: LayerOptions & { preNorm?: boolean } = {}) {
    super();
    const { inputDim, hiddenDim, outputDim, numInner } = config;
    this.preNorm = opts.preNorm ? this.registerModule('pre_norm', new NormGelu(inputDim, opts)) : null;
    this.fc1 = this.registerModule('fc1', new Linear(inputDim, hiddenDim, opts));
    this.blocks = this.registerModule('blocks', new ModuleList(Array.from({ length: numInner }, () => new NormGeluLinear(hiddenDim, hiddenDim, opts))));
    this.final = this.registerModule('final', new NormGeluLinear(hiddenDim, outputDim, opts));
  }

  /** x [..., D] → [..., output dim]. */
  forward(x: Tensor): Tensor {
    let h = this.fc1.forward(this.preNorm ? this.preNorm.forward(x) : x);
    for (const b of this.blocks) h = b.apply(h, h);
    return this.final.apply(h);
  }
}

/** One teacher's heads: head_mlp on its cls token, feat_mlp on the patch features. */
export class GenericAdaptor extends Module {
  readonly headMlp: MlpV2;
  readonly featMlp: MlpV2;

  constructor(readonly config: AdaptorConfig, opts: LayerOptions & { summaryPreNorm?: boolean; featurePreNorm?: boolean } = {}) {
    super();
    this.headMlp = this.registerModule('head_mlp', new MlpV2(config.summary, { ...opts, preNorm: opts.summaryPreNorm }));
    this.featMlp = this.registerModule('feat_mlp', new MlpV2(config.feature, { ...opts, preNorm: opts.featurePreNorm }));
    // A teacher without a summary target sends no gradient to its summary head (RADIO leaves its .grad None).
    if (!config.useSummary) for (const p of this.headMlp.parameters()) p.requiresGrad = false;
  }
}
