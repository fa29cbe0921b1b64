// The pure pieces of the trainer: the learning-rate schedule, which parameters take weight decay, and global-norm
// gradient clipping against a float64 reference.
import * as path from 'path';

import { clipGradNorm, decays, GroupedAdamW, learningRate, RadioModel, tensor } from '../../ts';
import type { Tensor } from '../../ts';
import { makeStudent, tempDir } from './support';

describe('learning-rate schedule: linear warm-up, then cosine', () => {
  const o = { lr: 1e-3, totalSteps: 110, warmupSteps: 10, minLr: 1e-5 };
  test('warm-up rises linearly from lr/warmup and reaches lr at its last step', () => {
    for (let s = 0; s < 10; s++) expect(learningRate(s, o)).toBeCloseTo((1e-3 * (s + 1)) / 10, 15);
  });
  test('cosine from lr at the end of warm-up through the midpoint to minLr at totalSteps, monotone', () => {
    expect(learningRate(10, o)).toBeCloseTo(1e-3, 15);
    expect(learningRate(60, o)).toBeCloseTo(1e-5 + 0.5 * (1e-3 - 1e-5), 15);
    expect(learningRate(35, o)).toBeCloseTo(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + Math.cos(Math.PI / 4)), 15);
    expect(learningRate(110, o)).toBe(1e-5);
    expect(learningRate(500, o)).toBe(1e-5);
    for (let s = 11; s <= 110; s++) expect(learningRate(s, o)).toBeLessThan(learningRate(s - 1, o));
  });
  test('no warm-up starts at lr; bad options name the field', () => {
    expect(learningRate(0, { lr: 2e-3, totalSteps: 5 })).toBe(2e-3);
    expect(() => learningRate(0, { lr: 1e-3, totalSteps: 5, warmupSteps: 6 })).toThrow(/schedule\.warmupSteps must be an integer in \[0, totalSteps 5\]/);
    expect(() => learningRate(0, { lr: -1, totalSteps: 5 })).toThrow(/schedule\.lr must be a finite number >= 0/);
    expect(() => learningRate(0, { lr: 1e-3, totalSteps: 5, minLr: 1 })).toThrow(/schedule\.minLr 1 is above lr/);
    expect(() => learningRate(-1, o)).toThrow(/step must be a non-negative integer/);
  });
});

describe('AdamW parameter groups', () => {
  let model: RadioModel;
  beforeAll(async () => {
    model = await RadioModel.load(await makeStudent(path.join(tempDir('groups'), 'student')));
  });
  afterAll(() => model.dispose());

  test('weight decay on weight matrices only: not on norms, biases, pos_embed or the cls/register tokens', () => {
    const opt = new GroupedAdamW(model.namedParameters(), { lr: 1e-3, weightDecay: 0.05 });
    const [decay, noDecay] = opt.groups;
    expect(decay.name).toBe('decay');
    expect(decay.optimizer.weightDecay).toBe(0.05);
    expect(noDecay.optimizer.weightDecay).toBe(0);
    const has = (g: typeof decay, k: string) => g.keys.includes(`radio_model.${k}`);
    for (const k of ['model.blocks.0.attn.qkv.weight', 'model.blocks.1.mlp.fc2.weight', 'model.patch_generator.embedder.weight', 'adaptors.clip.feat_mlp.final.2.weight'])
      expect({ k, decay: has(decay, k) }).toEqual({ k, decay: true });
    for (const k of ['model.blocks.0.norm1.weight', 'model.blocks.0.attn.qkv.bias', 'model.patch_generator.pos_embed', 'model.patch_generator.cls_token.token', 'adaptors.clip.feat_mlp.final.0.weight', 'adaptors.clip.feat_mlp.final.2.bias'])
      expect({ k, noDecay: has(noDecay, k) }).toEqual({ k, noDecay: true });
    // sam's summary head is frozen (use_summary false): in no group at all.
    const all = [...decay.keys, ...noDecay.keys];
    expect(all.some((k) => k.includes('adaptors.sam.head_mlp'))).toBe(false);
    expect(all.length).toBe(model.trainableParameters().length);
    expect(decays('x.pos_embed', [1, 4, 8])).toBe(false);
    expect(decays('blocks.0.attn.qkv.weight', [24, 8])).toBe(true);
  });
});

describe('clipGradNorm against a float64 reference', () => {
  const make = (shape: number[], seed: number, scale: number): Tensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    let s = seed;
    const data = Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * scale);
    const p = tensor(new Float32Array(n), shape, { requiresGrad: true });
    p.grad = tensor(data, shape);
    return p;
  };
  const ref = async (ps: Tensor[]) => {
    let s = 0;
    for (const p of ps) for (const v of await p.grad!.toArray()) s += v * v;
    return Math.sqrt(s);
  };

  test('the norm matches float64; above maxNorm every gradient is scaled by max/(norm + 1e-6); below it nothing changes', async () => {
    const ps = [make([64, 33], 1, 2), make([7], 2, 10), make([3, 5, 11], 3, 0.5)];
    const before = await Promise.all(ps.map((p) => p.grad!.toArray()));
    const expected = await ref(ps);
    const norm = await clipGradNorm(ps, expected / 4);
    expect(Math.abs(norm - expected) / expected).toBeLessThan(1e-6);
    const factor = expected / 4 / (norm + 1e-6);
    for (const [i, p] of ps.entries()) {
      const after = await p.grad!.toArray();
      after.forEach((v, j) => expect(Math.abs(v - before[i][j] * factor)).toBeLessThanOrEqual(1e-7 * Math.abs(before[i][j]) + 1e-12));
    }
    expect(Math.abs((await ref(ps)) - expected / 4) / (expected / 4)).toBeLessThan(1e-5);
    const unchanged = await Promise.all(ps.map((p) => p.grad!.toArray()));
    const again = await clipGradNorm(ps, 1e9);
    expect(Math.abs(again - expected / 4) / (expected / 4)).toBeLessThan(1e-5);
    for (const [i, p] of ps.entries()) expect(await p.grad!.toArray()).toEqual(unchanged[i]);
  });

  test('bf16 gradients are summed in f32; a NaN or Inf gradient gives a non-finite norm and leaves the gradients alone', async () => {
    const p = make([300], 5, 1);
    const g32 = await p.grad!.toArray();
    p.grad = tensor(g32, [300], { dtype: 'bf16' });
    const bf = await p.grad.toArray();
    const expected = Math.sqrt(bf.reduce((s, v) => s + v * v, 0));
    expect(Math.abs((await clipGradNorm([p], Infinity)) - expected) / expected).toBeLessThan(1e-6);
    const q = make([10], 6, 1);
    const poisoned = await q.grad!.toArray();
    poisoned[3] = NaN;
    q.grad = tensor(poisoned, [10]);
    expect(await clipGradNorm([p, q], 1e-3)).toBeNaN();
    expect(await p.grad!.toArray()).toEqual(bf);
    poisoned[3] = Infinity;
    q.grad = tensor(poisoned, [10]);
    expect(await clipGradNorm([q], 1e-3)).toBe(Infinity);
    await expect(clipGradNorm([q], 0)).rejects.toThrow(/maxNorm must be a number > 0/);
  });
});
