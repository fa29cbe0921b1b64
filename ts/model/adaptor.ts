// Adaptor heads (spec §4.3): RADIO's MLP v2, `[pre_norm: LN + GELU] → fc1 → (x + Linear(GELU(LN(x))))·num_inner →
// LN → GELU → Linear`. Every LayerNorm here uses eps 1e-5 (torch's default), unlike the backbone's 1e-6.
import { gelu, layerNorm } from '../ops/norm';
import { linear } from '../ops/linear';
import type { Tensor } from '../tensor';
import type { MlpHeadConfig } from './config';
import { LinearWeights, loadLinear, loadNorm, NormWeights, WeightReader } from './weights';

const EPS = 1e-5;

export class MlpV2Head {
  private constructor(
    private readonly preNorm: NormWeights | null,
    private readonly fc1: LinearWeights,
    private readonly blocks: Array<{ norm: NormWeights; linear: LinearWeights }>,
    private readonly finalNorm: NormWeights,
    private readonly finalLinear: LinearWeights,
  ) {}

  static async load(r: WeightReader, key: string, c: MlpHeadConfig): Promise<MlpV2Head> {
    if (r.has(`${key}.fc2.weight`) && !r.has(`${key}.final.2.weight`))
      throw new Error(`${r.file.file}: adaptor head '${key}' is an MLP v1 head (fc1, norm, fc2), which is not supported; only MLP v2`);
    const preNorm = r.has(`${key}.pre_norm.0.weight`) ? await loadNorm(r, `${key}.pre_norm.0`, c.inputDim) : null;
    const fc1 = await loadLinear(r, `${key}.fc1`, c.hiddenDim, c.inputDim);
    const blocks = [];
    for (let k = 0; k < c.numInner; k++)
      blocks.push({ norm: await loadNorm(r, `${key}.blocks.${k}.0`, c.hiddenDim), linear: await loadLinear(r, `${key}.blocks.${k}.2`, c.hiddenDim, c.hiddenDim) });
    if (r.has(`${key}.blocks.${c.numInner}.0.weight`))
      throw new Error(`${r.file.file}: adaptor head '${key}' has more inner blocks than num_inner ${c.numInner} in config.json`);
    const finalNorm = await loadNorm(r, `${key}.final.0`, c.hiddenDim);
    const finalLinear = await loadLinear(r, `${key}.final.2`, c.outputDim, c.hiddenDim);
    return new MlpV2Head(preNorm, fc1, blocks, finalNorm, finalLinear);
  }

  /** x [..., D] → [..., output dim]. `free` releases each intermediate once used (a no-op while autograd records). */
  forward(x: Tensor, free: (t: Tensor) => void): Tensor {
    const normGelu = (t: Tensor, n: NormWeights): Tensor => {
      const h = layerNorm(t, n.weight, n.bias, EPS);
      const g = gelu(h);
      free(h);
      return g;
    };
    const pre = this.preNorm ? normGelu(x, this.preNorm) : x;
    let h = linear(pre, this.fc1.weight, this.fc1.bias);
    if (pre !== x) free(pre);
    for (const b of this.blocks) {
      const a = normGelu(h, b.norm);
      const next = linear(a, b.linear.weight, b.linear.bias, { residual: h });
      free(a);
      free(h);
      h = next;
    }
    const a = normGelu(h, this.finalNorm);
    free(h);
    const out = linear(a, this.finalLinear.weight, this.finalLinear.bias);
    free(a);
    return out;
  }
}
