// ops.multiTeacherLoss: the RADIO distillation loss over several teachers in one fused op (spec §3, §4.1).
// The native op computes every term and the student gradients in one pass; the gradients are kept and handed to
// autograd (scaled by the upstream gradient) when total.backward() runs.
import { isGradEnabled } from '../autograd';
import { native, NativeBuffer, NativeLossPart, NativeLossTerm } from '../native';
import { dtypeSize, record, Tensor } from '../tensor';

/** One side (student adaptor output or teacher output) of a teacher term. */
export interface LossSide {
  /** [B, C] */
  summary?: Tensor;
  /** [B, h*w, C], tokens in row-major (h, w) order */
  features?: Tensor;
  /** [h, w] of the feature tokens; defaults to a square grid */
  grid?: [number, number];
}

export interface TeacherTerm {
  student: LossSide;
  teacher: LossSide;
  /** λ_t, default 1 */
  summaryWeight?: number;
  /** γ_t, default 1 */
  featureWeight?: number;
}

export interface MultiTeacherLossOptions {
  mode?: 'cosine+smoothl1' | 'mse';
  /** weight of the per-token cosine distance in 'cosine+smoothl1', default 0.9 */
  alpha?: number;
  /** weight of the smooth-L1 term in 'cosine+smoothl1', default 0.1 */
  beta?: number;
  /** smooth-L1 transition point (PyTorch's beta), default 1 */
  delta?: number;
}

export interface MultiTeacherLossResult {
  /** Σ_t (λ_t · Ls_t + γ_t · Lf_t), an f32 scalar; backward() sends gradients to the student tensors. */
  total: Tensor;
  /** The unweighted Ls_t and Lf_t per teacher (f32 scalars for logging, outside the autograd graph). */
  terms: Array<{ summary?: Tensor; features?: Tensor }>;
}

const OP = 'multiTeacherLoss';

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

function finite(value: unknown, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`${OP}: ${what} must be a finite number, got ${value}`);
  return value;
}

function checkTensor(t: unknown, who: string, rank: number, shape: string): Tensor {
  if (!(t instanceof Tensor)) throw new Error(`${who} must be a Tensor`);
  t.native(OP);
  if (t.dtype !== 'f32' && t.dtype !== 'bf16') throw new Error(`${who} must be f32 or bf16, got ${t.dtype}`);
  if (t.shape.length !== rank) throw new Error(`${who} must have shape ${shape}, got ${fmt(t.shape)}`);
  // The loss is a mean over samples (and tokens) of per-vector distances: with a zero dimension there is nothing
  // to average, so PyTorch's NaN would only poison training later. Refused here, naming the dimension.
  const names = rank === 2 ? ['batch', 'channels'] : ['batch', 'tokens', 'channels'];
  const empty = t.shape.findIndex((d) => d === 0);
  if (empty >= 0) throw new Error(`${who} is empty (${fmt(t.shape)}): ${names[empty]} must be > 0`);
  return t;
}

function gridOf(side: LossSide, tokens: number, who: string): [number, number] {
  if (side.grid === undefined) {
    const s = Math.round(Math.sqrt(tokens));
    if (s * s !== tokens) throw new Error(`${who} features have ${tokens} tokens, not a square grid; pass grid: [h, w]`);
    return [s, s];
  }
  const g = side.grid;
  if (!Array.isArray(g) || g.length !== 2 || !g.every((d) => Number.isInteger(d) && d > 0))
    throw new Error(`${who} grid must be [h, w] with positive integers, got ${JSON.stringify(g)}`);
  if (g[0] * g[1] !== tokens) throw new Error(`${who} features have ${tokens} tokens, which does not match grid ${fmt(g)}`);
  return [g[0], g[1]];
}

/** Student and teacher tensors of one part, checked against each other. */
function pair(term: TeacherTerm, key: 'summary' | 'features', who: string): [Tensor, Tensor] | null {
  const s = term.student[key];
  const t = term.teacher[key];
  if (s === undefined && t === undefined) return null;
  if (s === undefined || t === undefined)
    throw new Error(`${who}: ${key} given for the ${s === undefined ? 'teacher' : 'student'} only; give both or neither`);
  const rank = key === 'summary' ? 2 : 3;
  const shape = key === 'summary' ? '[B, C]' : '[B, N, C]';
  checkTensor(s, `${who}: student ${key}`, rank, shape);
  checkTensor(t, `${who}: teacher ${key}`, rank, shape);
  if (s.shape[0] !== t.shape[0])
    throw new Error(`${who}: batch mismatch in ${key}: student ${fmt(s.shape)}, teacher ${fmt(t.shape)}`);
  if (s.shape[rank - 1] !== t.shape[rank - 1])
    throw new Error(`${who}: channel mismatch in ${key}: student ${fmt(s.shape)}, teacher ${fmt(t.shape)}`);
  return [s, t];
}

/**
 * The multi-teacher distillation loss: per teacher t, Ls_t = mean_b (1 − cos(y_t, z_t)) on the summaries and Lf_t on
 * the features, with the smaller feature map bilinearly resized (align_corners false) to the larger grid inside the
 * kernel: 'cosine+smoothl1' Lf_t = α·mean_{b,n}(1 − cos) + β·mean_{b,n,c} smoothL1_δ(f − g), or 'mse'
 * Lf_t = mean_{b,n,c} (f − g)². total = Σ_t (λ_t·Ls_t + γ_t·Lf_t). Gradients flow to the student tensors only.
 */
export function multiTeacherLoss(terms: TeacherTerm[], opts: MultiTeacherLossOptions = {}): MultiTeacherLossResult {
  if (!Array.isArray(terms) || terms.length === 0) throw new Error(`${OP}: terms must be a non-empty array`);
  // How many terms one call takes is the native family's limit (native/loss/loss.h), so no number is kept here.
  const tooMany = native.lossUnsupported(terms.length);
  if (tooMany) throw new Error(`${OP}: ${tooMany}`);
  const mode = opts.mode ?? 'cosine+smoothl1';
  if (mode !== 'cosine+smoothl1' && mode !== 'mse') throw new Error(`${OP}: unknown mode ${JSON.stringify(mode)}`);
  const alpha = finite(opts.alpha, 0.9, 'alpha');
  const beta = finite(opts.beta, 0.1, 'beta');
  const delta = finite(opts.delta, 1, 'delta');
  if (delta < 0) throw new Error(`${OP}: delta must be >= 0, got ${delta}`);

  type Grids = { student: [number, number]; teacher: [number, number] };
  const parts: Array<{
    summary: [Tensor, Tensor] | null;
    features: [Tensor, Tensor] | null;
    grids?: Grids;
    lambda: number;
    gamma: number;
  }> = [];
  terms.forEach((term, k) => {
    const who = `${OP}: teacher ${k}`;
    if (!term || typeof term !== 'object' || !term.student || !term.teacher)
      throw new Error(`${who}: each term needs student and teacher`);
    const summary = pair(term, 'summary', who);
    const features = pair(term, 'features', who);
    if (!summary && !features) throw new Error(`${who}: has neither summary nor features`);
    if (summary && features && summary[0].shape[0] !== features[0].shape[0])
      throw new Error(`${who}: batch mismatch between summary ${fmt(summary[0].shape)} and features ${fmt(features[0].shape)}`);
    const grids = features && {
      student: gridOf(term.student, features[0].shape[1], `${who}: student`),
      teacher: gridOf(term.teacher, features[1].shape[1], `${who}: teacher`),
    };
    const lambda = finite(term.summaryWeight, 1, `teacher ${k} summaryWeight`);
    const gamma = finite(term.featureWeight, 1, `teacher ${k} featureWeight`);
    parts.push({ summary, features, grids: grids ?? undefined, lambda, gamma });
  });
  const all = parts.flatMap((p) => [...(p.summary ?? []), ...(p.features ?? [])]);
  const device = all[0].device;
  for (const t of all) if (t.device !== device) throw new Error(`${OP}: tensors are on different devices (${device} and ${t.device})`);

  const scalar = () => new Tensor(native.alloc(device, 4), [], 'f32', device);
  const total = scalar();
  const results: MultiTeacherLossResult['terms'] = [];
  const grads: Array<{ input: Tensor; grad: NativeBuffer }> = [];
  const nativeTerms: NativeLossTerm[] = parts.map((p) => {
    const out: { summary?: Tensor; features?: Tensor } = {};
    const part = ([s, t]: [Tensor, Tensor], result: Tensor): NativeLossPart => {
      const np: NativeLossPart = {
        student: s.native(OP),
        teacher: t.native(OP),
        studentDtype: s.dtype,
        teacherDtype: t.dtype,
        channels: s.shape[s.shape.length - 1],
        out: result.native(OP),
      };
      if (isGradEnabled() && s.requiresGrad) {
        // Held by a Tensor so that the tensor scope of the step frees it with the rest of the graph.
        const kept = new Tensor(native.alloc(device, s.numel * dtypeSize(s.dtype)), s.shape, s.dtype, device);
        np.grad = kept.native(OP);
        grads.push({ input: s, grad: np.grad });
      }
      return np;
    };
    const nt: NativeLossTerm = { batch: (p.summary ?? p.features)![0].shape[0], lambda: p.lambda, gamma: p.gamma };
    if (p.summary) nt.summary = part(p.summary, (out.summary = scalar()));
    if (p.features && p.grids)
      nt.features = { ...part(p.features, (out.features = scalar())), studentGrid: p.grids.student, teacherGrid: p.grids.teacher };
    results.push(out);
    return nt;
  });
  native.multiTeacherLoss({ terms: nativeTerms, mode: mode === 'mse' ? 'mse' : 'cosine+smoothl1', alpha, beta, delta, total: total.native(OP) });

  record(
    total,
    OP,
    grads.map((g) => g.input),
    (g) => {
      const upstream = g.dtype === 'f32' ? g : g.cast('f32');
      const out = grads.map(({ input, grad }) => {
        const gi = new Tensor(native.alloc(device, input.numel * dtypeSize(input.dtype)), input.shape, input.dtype, device);
        native.lossGradScale({ out: gi.native(`${OP} backward`), grad, dtype: input.dtype, n: input.numel, scalar: upstream.native(`${OP} backward`) });
        return gi;
      });
      if (upstream !== g) upstream.dispose();
      return out;
    },
  );
  return { total, terms: results };
}
