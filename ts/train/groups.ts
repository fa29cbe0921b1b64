// AdamW over parameter groups: weight decay on the weight matrices only. Norm weights and biases (every 1-d
// parameter), the position embedding and the cls/register tokens are not decayed, as timm's
// param_groups_weight_decay with the ViT's no_weight_decay set ({pos_embed, cls_token, ...}) does.
import { AdamW, AdamWOptions } from '../optim/adamw';
import type { Parameter } from '../nn/parameter';

const NO_DECAY_NAMES = [/(^|\.)pos_embed$/, /(^|\.)cls_token(\.|$)/, /(^|\.)register_tokens?$/];

/** Whether the parameter under this checkpoint key takes weight decay. */
export function decays(key: string, shape: readonly number[]): boolean {
  if (shape.length <= 1) return false;
  return !NO_DECAY_NAMES.some((r) => r.test(key));
}

export type GroupedAdamWOptions = AdamWOptions;

export interface ParamGroup {
  name: 'decay' | 'no_decay';
  keys: string[];
  optimizer: AdamW;
}

/** One AdamW per group, stepped together: lr is shared, weightDecay applies to the 'decay' group only. */
export class GroupedAdamW {
  readonly groups: ParamGroup[];

  constructor(named: ReadonlyArray<[string, Parameter]>, opts: GroupedAdamWOptions) {
    const trainable = named.filter(([, p]) => p.requiresGrad);
    if (trainable.length === 0) throw new Error('GroupedAdamW: no trainable parameters');
    const split = { decay: trainable.filter(([k, p]) => decays(k, p.shape)), no_decay: trainable.filter(([k, p]) => !decays(k, p.shape)) };
    this.groups = (['decay', 'no_decay'] as const)
      .filter((g) => split[g].length > 0)
      .map((g) => ({
        name: g,
        keys: split[g].map(([k]) => k),
        optimizer: new AdamW(split[g].map(([, p]) => p), { ...opts, weightDecay: g === 'decay' ? opts.weightDecay : 0 }),
      }));
  }

  set lr(lr: number) {
    for (const g of this.groups) g.optimizer.lr = lr;
  }
  get lr(): number {
    return this.groups[0].optimizer.lr;
  }

  step(): void {
    for (const g of this.groups) g.optimizer.step();
  }

  zeroGrad(): void {
    for (const g of this.groups) g.optimizer.zeroGrad();
  }

  get steps(): number {
    return this.groups[0].optimizer.steps;
  }
}
