// ops.multiTeacherLoss on every backend: values against a naive float64 reference and PyTorch fixtures, student
// gradients against finite differences, determinism, autograd plumbing and bad-input errors.
import * as fs from 'fs';
import * as path from 'path';

import { Device, DType, noGrad, ops, Tensor, tensor } from '../ts';
import { native } from '../ts/native';
import type { TeacherTerm } from '../ts/ops';
import { differences, referenceLoss, RefOptions, RefTerm, summaryGradientScale } from './support/loss-reference';
import { describeEachDevice, finiteDifferenceGrad, freshSeed, poisonOutputs, randomArray, relativeError, roundBf16, testDevices } from './support/reference';

poisonOutputs();

interface TermSpec {
  cs?: number;
  cf?: number;
  sg?: [number, number];
  tg?: [number, number];
  lam?: number;
  gam?: number;
}
interface Case {
  name: string;
  batch: number;
  terms: TermSpec[];
  opts?: RefOptions;
}

const CASES: Case[] = [
  { name: 'one teacher, equal grids, batch 1', batch: 1, terms: [{ cs: 6, cf: 5, sg: [3, 3], tg: [3, 3] }] },
  { name: 'teacher grid larger (student upsampled), mse', batch: 2, terms: [{ cs: 4, cf: 7, sg: [3, 2], tg: [5, 4] }], opts: { mode: 'mse' } },
  {
    name: 'two teachers, student grid larger, one without summary',
    batch: 2,
    terms: [
      { cs: 5, cf: 6, sg: [5, 5], tg: [3, 3], lam: 0.5, gam: 2 },
      { cf: 4, sg: [5, 5], tg: [5, 5] },
    ],
    opts: { alpha: 0.6, beta: 0.7, delta: 0.3 },
  },
  {
    name: 'three teachers, mixed axes, one summary-only, batch 1, L1 (delta 0)',
    batch: 1,
    terms: [{ cf: 3, sg: [4, 6], tg: [5, 3] }, { cs: 9 }, { cs: 3, cf: 5, sg: [2, 2], tg: [7, 7] }],
    opts: { delta: 0 },
  },
  {
    name: 'four teachers like the paper (CLIP-H, CLIP-L, DINOv2, SAM), small',
    batch: 2,
    terms: [
      { cs: 8, cf: 8, sg: [6, 6], tg: [6, 6] },
      { cs: 6, cf: 6, sg: [6, 6], tg: [5, 5] },
      { cs: 10, cf: 10, sg: [6, 6], tg: [3, 3] },
      { cf: 4, sg: [6, 6], tg: [9, 9] },
    ],
  },
];

const TOL: Record<'f32' | 'bf16', number> = { f32: 1e-5, bf16: 1e-2 };

const quantize = (x: Float64Array, dtype: DType) => (dtype === 'bf16' ? x.map(roundBf16) : x.map(Math.fround));

/** Random float64 inputs, already rounded to what the tensors will hold. */
function makeInputs(c: Case, dtype: DType): RefTerm[] {
  return c.terms.map((s) => {
    const draw = (n: number, scale = 1) => quantize(randomArray(n, freshSeed(), scale), dtype);
    const t: RefTerm = { batch: c.batch, student: {}, teacher: {}, summaryWeight: s.lam, featureWeight: s.gam };
    if (s.cs) {
      t.summaryChannels = s.cs;
      t.student.summary = draw(c.batch * s.cs);
      t.teacher.summary = draw(c.batch * s.cs);
    }
    if (s.cf) {
      t.featureChannels = s.cf;
      t.student.grid = s.sg;
      t.teacher.grid = s.tg;
      t.student.features = draw(c.batch * s.sg![0] * s.sg![1] * s.cf, 1.5);
      t.teacher.features = draw(c.batch * s.tg![0] * s.tg![1] * s.cf, 1.5);
    }
    return t;
  });
}

/** Tensors for the op; every student tensor requires a gradient, and so does every teacher tensor (it must get none). */
function makeTerms(ref: RefTerm[], device: Device, dtype: DType, teacherDtype: DType = dtype): TeacherTerm[] {
  return ref.map((t) => {
    const side = (s: RefTerm['student'], dt: DType): TeacherTerm['student'] => {
      const out: TeacherTerm['student'] = {};
      if (s.summary) out.summary = tensor(Float32Array.from(s.summary), [t.batch, t.summaryChannels!], { device, dtype: dt, requiresGrad: true });
      if (s.features) {
        const n = s.grid![0] * s.grid![1];
        out.features = tensor(Float32Array.from(s.features), [t.batch, n, t.featureChannels!], { device, dtype: dt, requiresGrad: true });
        out.grid = s.grid;
      }
      return out;
    };
    return { student: side(t.student, dtype), teacher: side(t.teacher, teacherDtype), summaryWeight: t.summaryWeight, featureWeight: t.featureWeight };
  });
}

/** Every student array of the reference, with the tensor that holds it and the term it belongs to. */
function studentParts(ref: RefTerm[], terms: TeacherTerm[]): Array<{ x: Float64Array; t: Tensor; term: RefTerm; label: string }> {
  return ref.flatMap((r, k) =>
    (['summary', 'features'] as const)
      .filter((p) => r.student[p])
      .map((p) => ({ x: r.student[p]!, t: terms[k].student[p]!, term: r, label: `teacher ${k} ${p}` })),
  );
}

/** Error of a loss value relative to the size of what it is computed from (the reference's scale): 1 - cos of two
 * nearly parallel summaries is tiny, but its f32 rounding is that of a cosine near 1 (a 3-channel draw at 1 - cos =
 * 2.4e-3 measured 2.7e-5 relative to the value and 6e-8 relative to its scale). Without cancellation the scale is the
 * value itself. */
const scaledError = (got: number, want: number, scale: number) => Math.abs(got - want) / Math.max(scale, Math.abs(want));

async function checkValues(out: ReturnType<typeof ops.multiTeacherLoss>, ref: RefTerm[], opts: RefOptions | undefined, tol: number) {
  const expected = referenceLoss(ref, opts);
  expect(scaledError(await out.total.item(), expected.total, expected.scale.total)).toBeLessThanOrEqual(tol);
  expect(out.terms).toHaveLength(ref.length);
  for (let k = 0; k < ref.length; k++) {
    for (const p of ['summary', 'features'] as const) {
      if (expected.terms[k][p] === undefined) expect(out.terms[k][p]).toBeUndefined();
      else expect(scaledError(await out.terms[k][p]!.item(), expected.terms[k][p]!, expected.scale.terms[k][p]!)).toBeLessThanOrEqual(tol);
    }
  }
}

describeEachDevice('multiTeacherLoss on %s', (device) => {
  describe.each(['f32', 'bf16'] as const)('%s', (dtype) => {
    test.each(CASES)('$name: values match float64, gradients match finite differences', async (c) => {
      const ref = makeInputs(c, dtype);
      const terms = makeTerms(ref, device, dtype);
      const out = ops.multiTeacherLoss(terms, c.opts);
      expect(out.total.shape).toEqual([]);
      expect(out.total.dtype).toBe('f32');
      await checkValues(out, ref, c.opts, TOL[dtype]);
      out.total.backward();
      // Each student tensor feeds only its own term, so the other terms are constants of its derivative.
      for (const { x, t, term, label } of studentParts(ref, terms)) {
        const fd = finiteDifferenceGrad((v) => {
          const saved = Float64Array.from(x);
          x.set(v);
          const value = referenceLoss([term], c.opts).total;
          x.set(saved);
          return value;
        }, Float64Array.from(x));
        expect(t.grad).not.toBeNull();
        expect(t.grad!.dtype).toBe(dtype);
        const g = await t.grad!.toArray();
        // Near (anti)parallel summaries the gradient is a small difference of larger parts: weigh the error against
        // their size (a 3-channel draw at 1 - cos = 2 - 1e-5 measured 1.4e-5 relative to the gradient itself).
        const scale = label.endsWith('summary') ? summaryGradientScale(term) : 0;
        const err = relativeError(g, fd) * (Math.hypot(...fd) / Math.max(Math.hypot(...fd), scale));
        if (err > TOL[dtype]) throw new Error(`${label}: gradient relative error ${err}`);
      }
      for (const term of terms) for (const t of [term.teacher.summary, term.teacher.features]) if (t) expect(t.grad).toBeNull();
    });
  });

  test('bf16 student against f32 teacher: mixed dtypes in one call', async () => {
    const c = CASES[4];
    const ref = makeInputs(c, 'bf16');
    const terms = makeTerms(ref, device, 'bf16', 'f32');
    const out = ops.multiTeacherLoss(terms);
    await checkValues(out, ref, undefined, 1e-5);
  });

  test('many items: wide channels, several warps per item and bands of student rows', async () => {
    const c: Case = {
      name: 'large',
      batch: 3,
      terms: [
        { cs: 45, cf: 70, sg: [11, 13], tg: [7, 9] },
        { cf: 37, sg: [9, 8], tg: [30, 17], gam: 0.5 },
      ],
    };
    const ref = makeInputs(c, 'f32');
    const terms = makeTerms(ref, device, 'f32');
    const out = ops.multiTeacherLoss(terms);
    await checkValues(out, ref, undefined, 1e-5);
    out.total.backward();
    for (const { x, t, term, label } of studentParts(ref, terms)) {
      const picks = Array.from({ length: 24 }, (_, i) => Math.floor(((i + 0.5) / 24) * x.length));
      const fd = differences(() => referenceLoss([term], c.opts).total, x, picks);
      const g = await t.grad!.toArray();
      const err = relativeError(picks.map((i) => g[i]), fd);
      if (err > 1e-5) throw new Error(`${label}: gradient relative error ${err}`);
    }
  });

  test('deterministic: the same inputs give the same bits', async () => {
    const ref = makeInputs(CASES[4], 'f32');
    const terms = makeTerms(ref, device, 'f32');
    const run = async () => {
      const out = ops.multiTeacherLoss(terms);
      out.total.backward();
      const grads = await Promise.all(studentParts(ref, terms).map((p) => p.t.grad!.toArray()));
      for (const p of studentParts(ref, terms)) p.t.zeroGrad();
      return [await out.total.toArray(), ...grads];
    };
    const first = await run();
    const second = await run();
    first.forEach((a, i) => expect(Buffer.from(second[i].buffer).equals(Buffer.from(a.buffer))).toBe(true));
  });

  test('backward scales the kept gradients by the upstream gradient and accumulates', async () => {
    const ref = makeInputs(CASES[2], 'f32');
    const terms = makeTerms(ref, device, 'f32');
    const out = ops.multiTeacherLoss(terms, CASES[2].opts);
    out.total.backward();
    const parts = studentParts(ref, terms);
    const once = await Promise.all(parts.map((p) => p.t.grad!.toArray()));
    out.total.scale(2.5).backward();
    for (let i = 0; i < parts.length; i++) {
      const twice = await parts[i].t.grad!.toArray();
      expect(relativeError(twice, once[i].map((v) => 3.5 * v))).toBeLessThanOrEqual(1e-6);
    }
  });

  test('noGrad, or students without requiresGrad: no graph and the same value', async () => {
    const ref = makeInputs(CASES[0], 'f32');
    const terms = makeTerms(ref, device, 'f32');
    const a = noGrad(() => ops.multiTeacherLoss(terms));
    expect(a.total.requiresGrad).toBe(false);
    const detached = terms.map((t) => ({ student: { summary: t.student.summary!.detach(), features: t.student.features!.detach() }, teacher: t.teacher }));
    const b = ops.multiTeacherLoss(detached);
    expect(b.total.requiresGrad).toBe(false);
    expect(await a.total.item()).toBe(await b.total.item());
    expect(() => b.total.backward()).toThrow(/does not require a gradient/);
  });
});

describe('PyTorch fixtures', () => {
  const dir = path.join(__dirname, 'fixtures', 'loss');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  const cases = files.flatMap((f) => testDevices().map((d) => [f.replace(/\.json$/, ''), d] as const));
  test.each(cases)('%s on %s', async (name, device) => {
    const fx = JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8'));
    type Side = { summary?: { shape: number[]; data: number[] }; features?: { shape: number[]; data: number[] }; grid?: [number, number] };
    const side = (s: Side, requiresGrad: boolean) => ({
      summary: s.summary && tensor(s.summary.data, s.summary.shape, { device, requiresGrad }),
      features: s.features && tensor(s.features.data, s.features.shape, { device, requiresGrad }),
      grid: s.grid,
    });
    const terms: TeacherTerm[] = fx.terms.map((t: { student: Side; teacher: Side; summaryWeight: number; featureWeight: number }) => ({
      student: side(t.student, true),
      teacher: side(t.teacher, false),
      summaryWeight: t.summaryWeight,
      featureWeight: t.featureWeight,
    }));
    const out = ops.multiTeacherLoss(terms, fx.options);
    expect(relativeError([await out.total.item()], [fx.expected.total])).toBeLessThanOrEqual(1e-5);
    out.total.backward();
    for (let k = 0; k < terms.length; k++) {
      for (const p of ['summary', 'features'] as const) {
        const want = fx.expected.terms[k][p];
        if (want === undefined) continue;
        expect(relativeError([await out.terms[k][p]!.item()], [want])).toBeLessThanOrEqual(1e-5);
        const err = relativeError(await terms[k].student[p]!.grad!.toArray(), fx.expected.grads[k][p]);
        if (err > 1e-5) throw new Error(`teacher ${k} ${p}: gradient relative error ${err}`);
      }
    }
  });
});

describeEachDevice('%s agrees with cpu', (device) => {
  test('within 1e-5 of cpu on fresh inputs', async () => {
    const ref = makeInputs(CASES[4], 'f32');
    const run = async (d: Device) => {
      const terms = makeTerms(ref, d, 'f32');
      const out = ops.multiTeacherLoss(terms);
      out.total.backward();
      return [await out.total.toArray(), ...(await Promise.all(studentParts(ref, terms).map((p) => p.t.grad!.toArray())))];
    };
    const want = await run('cpu');
    const got = await run(device);
    got.forEach((g, i) => expect(relativeError(g, want[i])).toBeLessThanOrEqual(1e-5));
  });
}, (d) => d !== 'cpu');

// The loss aligns grids with the interpolation family's bilinear taps: resizing the smaller map first with
// ops.interpolate and taking the equal-grid loss must give the same value and the same student gradient.
describeEachDevice('alignment on %s agrees with ops.interpolate', (device) => {
  test.each([
    ['student upsampled', [3, 5], [7, 6]],
    ['teacher upsampled', [6, 7], [4, 3]],
    ['each upsampled along one axis', [6, 3], [4, 7]],
  ] as const)('%s: loss and student gradient within 1e-5 of resize-then-loss', async (_label, sg, tg) => {
    const [B, C] = [2, 5];
    const big: [number, number] = [Math.max(sg[0], tg[0]), Math.max(sg[1], tg[1])];
    const s0 = Float32Array.from(randomArray(B * sg[0] * sg[1] * C, freshSeed()));
    const t0 = Float32Array.from(randomArray(B * tg[0] * tg[1] * C, freshSeed()));
    const resize = (x: Tensor, from: readonly [number, number]) =>
      from[0] === big[0] && from[1] === big[1] ? x : ops.interpolate(x, { size: big, layout: 'NLC', grid: [from[0], from[1]] });
    const run = async (prealign: boolean) => {
      const student = tensor(s0, [B, sg[0] * sg[1], C], { device, requiresGrad: true });
      const teacher = tensor(t0, [B, tg[0] * tg[1], C], { device });
      const term: TeacherTerm = prealign
        ? { student: { features: resize(student, sg), grid: big }, teacher: { features: resize(teacher, tg), grid: big } }
        : { student: { features: student, grid: [sg[0], sg[1]] }, teacher: { features: teacher, grid: [tg[0], tg[1]] } };
      const out = ops.multiTeacherLoss([term]);
      out.total.backward();
      return [await out.total.toArray(), await student.grad!.toArray()];
    };
    const [fused, composed] = [await run(false), await run(true)];
    expect(relativeError(fused[0], composed[0])).toBeLessThanOrEqual(1e-5);
    expect(relativeError(fused[1], composed[1])).toBeLessThanOrEqual(1e-5);
  });
});

describe('bad input', () => {
  const f = (shape: number[], dtype: DType = 'f32') => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, { dtype });
  const good = (): TeacherTerm => ({
    student: { summary: f([2, 4]), features: f([2, 9, 4]) },
    teacher: { summary: f([2, 4]), features: f([2, 4, 4]) },
  });
  const withTerm = (k: number, bad: TeacherTerm) => Array.from({ length: k + 1 }, (_, i) => (i === k ? bad : good()));

  test.each([
    ['channel mismatch', 1, { student: { features: f([2, 9, 4]) }, teacher: { features: f([2, 9, 5]) } }, /teacher 1: channel mismatch in features/],
    ['summary channel mismatch', 2, { student: { summary: f([2, 4]) }, teacher: { summary: f([2, 3]) } }, /teacher 2: channel mismatch in summary/],
    ['token count not matching the grid', 0, { student: { features: f([2, 10, 4]), grid: [3, 3] }, teacher: { features: f([2, 9, 4]) } }, /teacher 0: student features have 10 tokens, which does not match grid \[3, 3\]/],
    ['non-square tokens without a grid', 1, { student: { features: f([2, 9, 4]) }, teacher: { features: f([2, 6, 4]) } }, /teacher 1: teacher features have 6 tokens, not a square grid/],
    ['batch mismatch', 2, { student: { features: f([2, 9, 4]) }, teacher: { features: f([3, 9, 4]) } }, /teacher 2: batch mismatch in features/],
    ['summary on one side only', 0, { student: { summary: f([2, 4]) }, teacher: {} }, /teacher 0: summary given for the student only/],
    ['nothing to compare', 1, { student: {}, teacher: {} }, /teacher 1: has neither summary nor features/],
    ['wrong rank', 0, { student: { features: f([18, 4]) }, teacher: { features: f([18, 4]) } }, /teacher 0: student features must have shape \[B, N, C\]/],
    ['i32 tensors', 1, { student: { summary: f([2, 4], 'i32') }, teacher: { summary: f([2, 4], 'i32') } }, /teacher 1: student summary must be f32 or bf16/],
    ['bad grid', 0, { student: { features: f([2, 9, 4]), grid: [9, 0] }, teacher: { features: f([2, 9, 4]) } }, /teacher 0: student grid must be \[h, w\]/],
  ] as Array<[string, number, TeacherTerm, RegExp]>)('%s names the teacher', (_, k, bad, message) => {
    expect(() => ops.multiTeacherLoss(withTerm(k, bad))).toThrow(message);
  });

  test('options, weights, term counts and disposed tensors', () => {
    expect(() => ops.multiTeacherLoss([])).toThrow(/non-empty array/);
    expect(() => ops.multiTeacherLoss(Array.from({ length: 17 }, good))).toThrow('multiTeacherLoss: at most 16 teacher terms per call, got 17');
    // The limit is the native family's (native/loss/loss.h), asked by the op: 16 terms run.
    expect(native.lossUnsupported(16)).toBeNull();
    expect(native.lossUnsupported(0)).toBe('at least 1 teacher term per call, got 0');
    expect(() => ops.multiTeacherLoss([good()], { mode: 'l2' as 'mse' })).toThrow(/unknown mode/);
    expect(() => ops.multiTeacherLoss([good()], { delta: -1 })).toThrow(/delta must be >= 0/);
    expect(() => ops.multiTeacherLoss([good()], { alpha: NaN })).toThrow(/alpha must be a finite number/);
    expect(() => ops.multiTeacherLoss([good(), { ...good(), featureWeight: Infinity }])).toThrow(/teacher 1 featureWeight/);
    const t = good();
    t.teacher.features!.dispose();
    expect(() => ops.multiTeacherLoss([t])).toThrow(/disposed/);
  });

  test('tensors on different devices', () => {
    const other = testDevices().find((d) => d !== 'cpu');
    if (!other) return expect(testDevices()).toEqual(['cpu']);
    const t = good();
    t.teacher.summary = t.teacher.summary!.to(other);
    expect(() => ops.multiTeacherLoss([t])).toThrow(/different devices/);
  });

  test('the native op checks buffer sizes itself, naming the teacher', () => {
    const buf = (n: number) => f([n]).native('test');
    const part = { student: buf(8), teacher: buf(8), studentDtype: 'f32' as const, teacherDtype: 'f32' as const, channels: 4, out: buf(1) };
    const term = { batch: 2, lambda: 1, gamma: 1, summary: part };
    expect(() => native.multiTeacherLoss({ terms: [term, { ...term, summary: { ...part, teacher: buf(7) } }], mode: 'cosine+smoothl1', alpha: 0.9, beta: 0.1, delta: 1, total: buf(1) })).toThrow(
      /teacher 1 summary: teacher holds 28 bytes, fewer than 8 f32 elements/,
    );
    const features = { ...part, studentGrid: [3, 3] as [number, number], teacherGrid: [2, 2] as [number, number], grad: buf(71) };
    expect(() => native.multiTeacherLoss({ terms: [{ ...term, summary: undefined, features: { ...features, student: buf(72), teacher: buf(32) } }], mode: 'cosine+smoothl1', alpha: 0.9, beta: 0.1, delta: 1, total: buf(1) })).toThrow(
      /teacher 0 features: grad holds 284 bytes/,
    );
  });
});
