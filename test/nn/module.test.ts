// The module layer (ts/nn) and tensor scopes (tidy / escape): names, modes, state dicts, lifetimes, and the
// layers against float64 with their gradients.
import { AdamW, memory, nn, ops, synchronize, tensor, tidy } from '../../ts';
import type { Device, Tensor } from '../../ts';
import { describeEachDevice, freshSeed, poisonOutputs, randomArray, relativeError } from '../support/reference';

poisonOutputs();

class Toy extends nn.Module {
  readonly inp: nn.Linear;
  readonly stack: nn.ModuleList<nn.LayerNorm>;
  readonly head: nn.Sequential;
  constructor(device: Device = 'cpu') {
    super();
    this.inp = this.registerModule('inp', new nn.Linear(4, 8, { device, seed: 1 }));
    this.stack = this.registerModule('stack', new nn.ModuleList([new nn.LayerNorm(8, 1e-5, { device }), new nn.LayerNorm(8, 1e-5, { device })]));
    this.head = this.registerModule('head', new nn.Sequential([new nn.Gelu(), new nn.Linear(8, 2, { device, bias: false, seed: 2 })]));
  }
  forward(x: Tensor): Tensor {
    let h = this.inp.forward(x);
    for (const n of this.stack) h = n.forward(h);
    return this.head.forward(h);
  }
}

const inUse = async (device: Device) => {
  await synchronize(device);
  return memory()[device]!.inUse;
};

describe('nn.Module', () => {
  test('parameters are named by their path, in registration order; modes apply to the whole tree', () => {
    const m = new Toy();
    expect(m.namedParameters().map(([k, p]) => `${k} [${p.shape.join(', ')}]`)).toEqual([
      'inp.weight [8, 4]', 'inp.bias [8]', 'stack.0.weight [8]', 'stack.0.bias [8]', 'stack.1.weight [8]', 'stack.1.bias [8]', 'head.1.weight [2, 8]',
    ]);
    expect(m.parameters().every((p) => p instanceof nn.Parameter && p.requiresGrad && p.gradNode === null)).toBe(true);
    expect(m.namedModules().map(([k]) => k)).toEqual(['', 'inp', 'stack', 'stack.0', 'stack.1', 'head', 'head.0', 'head.1']);
    expect(m.namedModules().every(([, c]) => c.training)).toBe(true);
    m.eval();
    expect(m.namedModules().some(([, c]) => c.training)).toBe(false);
    m.train();
    expect(m.namedModules().every(([, c]) => c.training)).toBe(true);
    expect(() => m.train('yes' as unknown as boolean)).toThrow(/train: mode must be a boolean/);
    m.dispose();
    expect(() => m.forward(tensor(new Float32Array(4), [1, 4]))).toThrow(/disposed/);
  });

  test('default initialisation: LayerNorm 1 and 0, Linear uniform in ±1/√fan_in, reproducible by seed', async () => {
    const a = new nn.Linear(64, 32, { seed: 5 });
    const b = new nn.Linear(64, 32, { seed: 5 });
    const w = await a.weight.toArray();
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(1 / 8);
    expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(0.1);
    expect(await b.weight.toArray()).toEqual(w);
    const n = new nn.LayerNorm(3, 1e-6);
    expect(Array.from(await n.weight.toArray())).toEqual([1, 1, 1]);
    expect(Array.from(await n.bias.toArray())).toEqual([0, 0, 0]);
  });

  test('stateDict / loadStateDict: in place, converted, all-or-nothing, strict about keys', async () => {
    const a = new Toy();
    const b = new Toy();
    const w = b.head.at(1) as nn.Linear;
    const held = w.weight;
    b.loadStateDict(new Map([...a.stateDict()].map(([k, t]) => [k, t.cast('bf16')])));
    expect(w.weight).toBe(held);
    // bf16 values converted into f32 parameters: a's values rounded to 8 significant bits.
    for (const [k, t] of b.stateDict()) {
      const err = relativeError(await t.toArray(), await a.stateDict().get(k)!.toArray());
      expect({ k, ok: err <= 2 ** -8 }).toEqual({ k, ok: true });
    }
    const partial = a.stateDict();
    partial.delete('stack.1.bias');
    partial.delete('inp.weight');
    expect(() => b.loadStateDict(partial)).toThrow('loadStateDict: missing keys (2): inp.weight, stack.1.bias');
    partial.set('extra', tensor([0], [1]));
    expect(() => b.loadStateDict(partial)).toThrow('loadStateDict: missing keys (2): inp.weight, stack.1.bias; unexpected keys (1): extra');
    expect(b.loadStateDict(partial, { strict: false })).toEqual({ missing: ['inp.weight', 'stack.1.bias'], unexpected: ['extra'] });
    const bad = a.stateDict().set('inp.bias', tensor(new Float32Array(7), [7]));
    expect(() => b.loadStateDict(bad)).toThrow("loadStateDict: 'inp.bias' has shape [7], expected [8]");
    expect(() => b.loadStateDict(null as unknown as Map<string, Tensor>)).toThrow(/expected a Map or an object/);
  });

  test('forward and backward reach every parameter; an optimizer step changes them', async () => {
    const m = new Toy();
    const x = tensor(Float32Array.from(randomArray(12, freshSeed())), [3, 4]);
    m.forward(x).mean().backward();
    expect(m.parameters().map((p) => p.grad !== null)).toEqual(new Array(7).fill(true));
    const before = await m.inp.weight.toArray();
    new AdamW(m.trainableParameters(), { lr: 0.1 }).step();
    expect(relativeError(await m.inp.weight.toArray(), before)).toBeGreaterThan(1e-3);
    m.zeroGrad();
    expect(m.parameters().some((p) => p.grad !== null)).toBe(false);
  });
});

describe('tidy and escape', () => {
  test('tidy frees what fn made except what it returns; nested results move to the outer scope', async () => {
    const base = await inUse('cpu');
    const x = tensor([1, 2, 3], [3]);
    let inner: Tensor | null = null;
    let dropped: Tensor | null = null;
    const out = tidy(() => {
      const r = tidy(() => {
        dropped = x.scale(2);
        inner = dropped.add(x);
        return { nested: [inner] };
      });
      return r.nested[0].scale(3);
    });
    expect(dropped!.disposed).toBe(true);
    expect(inner!.disposed).toBe(true);
    expect(Array.from(await out.toArray())).toEqual([9, 18, 27]);
    out.dispose();
    x.dispose();
    expect(await inUse('cpu')).toBe(base);
  });

  test('consume hands a tensor to the new scope: a chain of steps holds one step at a time', async () => {
    const start = tensor([1, 2], [2]);
    let x = start;
    const seen: Tensor[] = [];
    for (let i = 0; i < 3; i++) {
      const input = x;
      x = tidy(() => input.scale(2).add(input), { consume: [input] });
      seen.push(input);
    }
    expect(seen.map((t) => t.disposed)).toEqual([true, true, true]);
    expect(Array.from(await x.toArray())).toEqual([27, 54]);
    const kept = tensor([1], [1]);
    expect(tidy(() => kept, { consume: [kept] })).toBe(kept);
    expect(kept.disposed).toBe(false);
  });

  test('an escaped tensor, a parameter and a leaf gradient outlive the scope; a throw still frees', async () => {
    const p = nn.Parameter.from(tensor([1, 2], [2]));
    let kept: Tensor | null = null;
    let temp: Tensor | null = null;
    tidy(() => {
      kept = nn.escape(p.scale(2));
      temp = p.mul(p);
      temp.sum().backward();
    });
    expect(kept!.disposed).toBe(false);
    expect(temp!.disposed).toBe(true);
    expect(Array.from(await p.grad!.toArray())).toEqual([2, 4]);
    expect(() => tidy(() => {
      temp = p.scale(5);
      throw new Error('boom');
    })).toThrow('boom');
    expect(temp!.disposed).toBe(true);
    expect(() => tidy(async () => 1)).toThrow(/tidy: fn returned a Promise/);
  });
});

describeEachDevice('nn layers against float64 on %s', (device: Device) => {
  test('LayerScale (scaleLastDim) and scaleRows: values and both gradients', async () => {
    const [R, C] = [5, 6];
    const xv = randomArray(R * C, freshSeed());
    const gv = randomArray(C, freshSeed());
    const sv = randomArray(R, freshSeed());
    const wv = randomArray(R * C, freshSeed());
    const x = tensor(Float32Array.from(xv), [1, R, C], { device, requiresGrad: true });
    const ls = new nn.LayerScale(C, 0, { device });
    ls.loadStateDict({ grandma: tensor(Float32Array.from(gv), [C], { device }) });
    const y = ls.forward(x);
    // loss = Σ y ⊙ w, so dL/dx = γ ⊙ w and dL/dγ = Σ_rows x ⊙ w.
    y.mul(tensor(Float32Array.from(wv), [1, R, C], { device })).sum().backward();
    const f = (i: number) => Math.fround(xv[i]) * Math.fround(gv[i % C]);
    expect(relativeError(await y.toArray(), Array.from({ length: R * C }, (_, i) => f(i)))).toBeLessThanOrEqual(1e-6);
    expect(relativeError(await x.grad!.toArray(), Array.from({ length: R * C }, (_, i) => Math.fround(gv[i % C]) * Math.fround(wv[i])))).toBeLessThanOrEqual(1e-6);
    const dg = Array.from({ length: C }, (_, c) => Array.from({ length: R }, (_, r) => Math.fround(xv[r * C + c]) * Math.fround(wv[r * C + c])).reduce((a, b) => a + b, 0));
    expect(relativeError(await ls.gamma.grad!.toArray(), dg)).toBeLessThanOrEqual(1e-6);

    const s = tensor(Float32Array.from(sv), [R], { device, requiresGrad: true });
    const m = tensor(Float32Array.from(xv), [R, C], { device, requiresGrad: true });
    const z = nn.scaleRows(m, s);
    z.mul(tensor(Float32Array.from(wv), [R, C], { device })).sum().backward();
    expect(relativeError(await z.toArray(), Array.from({ length: R * C }, (_, i) => Math.fround(xv[i]) * Math.fround(sv[Math.floor(i / C)])))).toBeLessThanOrEqual(1e-6);
    const ds = Array.from({ length: R }, (_, r) => Array.from({ length: C }, (_, c) => Math.fround(xv[r * C + c]) * Math.fround(wv[r * C + c])).reduce((a, b) => a + b, 0));
    expect(relativeError(await s.grad!.toArray(), ds)).toBeLessThanOrEqual(1e-6);
    expect(() => nn.scaleLastDim(x, tensor([1, 2], [2], { device }))).toThrow('scaleLastDim: scale [2] does not match the last dimension of [1, 5, 6]');
  });

  test('Linear and LayerNorm modules compute what their ops compute', async () => {
    const lin = new nn.Linear(8, 3, { device, seed: freshSeed() });
    const ln = new nn.LayerNorm(8, 1e-6, { device });
    const x = tensor(Float32Array.from(randomArray(16, freshSeed())), [2, 8], { device });
    expect(await lin.forward(x, { activation: 'gelu' }).toArray()).toEqual(await ops.linear(x, lin.weight, lin.bias, { activation: 'gelu' }).toArray());
    expect(await ln.forward(x).toArray()).toEqual(await ops.layerNorm(x, ln.weight, ln.bias, 1e-6).toArray());
  });
});
