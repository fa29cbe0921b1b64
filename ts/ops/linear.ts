// Matrix products: linear (PyTorch's layout, fused bias/activation/residual epilogue) and batched matmul.
import { GemmArgs, GemmGeometry, native } from '../native';
import { checkSame, emptyTensor, numelOf, record, Tensor, zeros } from '../tensor';
import { activationBackward } from './activation';

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;
// activation::Kind's numbers for the kinds the GEMM epilogue fuses (native/activation/activation.h).
const ACTIVATION_CODE = { gelu: 1, relu: 2, quickGelu: 5, geluTanh: 6 } as const;

export interface LinearOptions {
  activation?: keyof typeof ACTIVATION_CODE;
  /** Added after the activation: out = act(x·Wᵀ + b) + residual. Same shape as the output. */
  residual?: Tensor;
}

function runGemm(op: string, a: Tensor, b: Tensor, c: Tensor, geometry: GemmGeometry, extra: Partial<GemmArgs> = {}): void {
  native.gemm({ a: a.native(op), b: b.native(op), c: c.native(op), activation: 0, dtype: a.dtype, geometry, ...extra });
}

/**
 * A new tensor of shape holding a plain product (no epilogue), as PyTorch defines it for zero sizes: an empty
 * result when it has no elements, zeros when the sum runs over k = 0 terms, else one gemm. The kernels are never
 * asked for a zero-size product, which they would leave unwritten.
 */
function product(shape: readonly number[], like: Tensor, k: number, gemm: (out: Tensor) => void): Tensor {
  if (numelOf(shape) > 0 && k === 0) return zeros(shape, { dtype: like.dtype, device: like.device });
  const out = emptyTensor(shape, like.dtype, like.device);
  if (out.numel > 0) gemm(out);
  return out;
}

function rowSums(op: string, g: Tensor, rows: number, cols: number): Tensor {
  if (rows === 0 || cols === 0) return zeros([cols], { dtype: g.dtype, device: g.device });
  const out = emptyTensor([cols], g.dtype, g.device);
  native.sumRows({ out: out.native(op), a: g.native(op), dtype: g.dtype, geometry: { rows, cols } });
  return out;
}

/** x [..., K] · weightᵀ (weight [N, K], PyTorch layout) + bias [N], then activation, then + residual. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor, opts: LinearOptions = {}): Tensor {
  const op = 'linear';
  const operands = [x, weight, ...(bias ? [bias] : []), ...(opts.residual ? [opts.residual] : [])];
  checkSame(op, operands);
  if (x.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported`);
  if (x.shape.length < 1) throw new Error(`${op}: input must have at least one dimension`);
  if (weight.shape.length !== 2) throw new Error(`${op}: weight must be [N, K], got ${fmt(weight.shape)}`);
  const [n, k] = weight.shape;
  if (x.shape[x.shape.length - 1] !== k)
    throw new Error(`${op}: K mismatch: input ${fmt(x.shape)} has last dimension ${x.shape[x.shape.length - 1]}, weight ${fmt(weight.shape)} expects ${k}`);
  if (bias && (bias.shape.length !== 1 || bias.shape[0] !== n)) throw new Error(`${op}: bias has shape ${fmt(bias.shape)}, expected [${n}]`);
  const outShape = [...x.shape.slice(0, -1), n];
  if (opts.residual && fmt(opts.residual.shape) !== fmt(outShape))
    throw new Error(`${op}: residual has shape ${fmt(opts.residual.shape)}, expected ${fmt(outShape)}`);
  if (opts.activation !== undefined && !(opts.activation in ACTIVATION_CODE))
    throw new Error(`${op}: unknown activation ${JSON.stringify(opts.activation)} (expected gelu, relu, quickGelu or geluTanh)`);
  // The rows of x: its leading dimensions, which may hold rows even when K = 0 leaves x with no elements.
  const m = numelOf(x.shape.slice(0, -1));
  const out = emptyTensor(outShape, x.dtype, x.device);
  const inputs = [x, weight, bias ?? null, opts.residual ?? null];
  const wantsGrad = inputs.some((t) => t?.requiresGrad);
  const act = opts.activation;
  // The activation's backward needs its input; keep it only when a gradient will be asked for.
  const preact = act && wantsGrad ? emptyTensor(outShape, x.dtype, x.device) : undefined;
  const epilogue = {
    bias: bias?.native(op),
    activation: act ? ACTIVATION_CODE[act] : 0,
    residual: opts.residual?.native(op),
    preactivation: preact?.native(op),
  } as const;
  if (out.numel > 0 && k > 0) {
    runGemm(op, x, weight, out, { m, n, k, batch: 1, transA: false, transB: true, strideA: 0, strideB: 0, strideC: 0 }, epilogue);
  } else if (out.numel > 0) {
    // K = 0: x·Wᵀ is all zeros, so out = act(bias) + residual (act(0) + residual without bias). A product of
    // zero operands with K = 1 runs exactly that through the same fused epilogue.
    const zx = zeros([m, 1], { dtype: x.dtype, device: x.device });
    const zw = zeros([n, 1], { dtype: x.dtype, device: x.device });
    runGemm(op, zx, zw, out, { m, n, k: 1, batch: 1, transA: false, transB: true, strideA: 0, strideB: 0, strideC: 0 }, epilogue);
    zx.dispose();
    zw.dispose();
  }
  const recorded = inputs.filter((t): t is Tensor => t !== null);
  return record(out, op, recorded, (g) => {
    const bop = 'linear backward';
    const gz = act && g.numel > 0 ? activationBackward(act, g, preact!) : g;
    const grads = new Map<Tensor, Tensor | null>();
    if (x.requiresGrad)
      grads.set(x, product(x.shape, x, n, (dx) =>
        runGemm(bop, gz, weight, dx, { m, n: k, k: n, batch: 1, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0 })));
    if (weight.requiresGrad)
      grads.set(weight, product(weight.shape, x, m, (dw) =>
        runGemm(bop, gz, x, dw, { m: n, n: k, k: m, batch: 1, transA: true, transB: false, strideA: 0, strideB: 0, strideC: 0 })));
    if (bias?.requiresGrad) grads.set(bias, rowSums(bop, gz, m, n));
    if (opts.residual?.requiresGrad) grads.set(opts.residual, g.alias());
    if (gz !== g) gz.dispose();
    return recorded.map((t) => grads.get(t) ?? null);
  });
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/**
 * op(a) · op(b) over the last two dimensions, batched over the leading ones: a [..., M, K] ([..., K, M] with
 * transA), b [..., K, N] ([..., N, K] with transB) with the same leading dimensions, or a 2-D b shared by the batch.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const op = 'matmul';
  checkSame(op, [a, b]);
  if (a.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported`);
  if (a.shape.length < 2 || b.shape.length < 2) throw new Error(`${op}: operands need at least 2 dimensions, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  // The kernel reads only true as a transpose; a truthy non-boolean would size the output as transposed but not be.
  for (const [name, v] of [['transA', transA], ['transB', transB]] as const)
    if (typeof v !== 'boolean') throw new Error(`${op}: ${name} must be a boolean, got ${JSON.stringify(v)}`);
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const [m, k] = transA ? [ac, ar] : [ar, ac];
  const [kb, n] = transB ? [bc, br] : [br, bc];
  if (k !== kb) throw new Error(`${op}: K mismatch: ${fmt(a.shape)}${transA ? 'ᵀ' : ''} · ${fmt(b.shape)}${transB ? 'ᵀ' : ''} (${k} vs ${kb})`);
  const lead = a.shape.slice(0, -2);
  const shared = b.shape.length === 2 && lead.length > 0;
  if (!shared && fmt(b.shape.slice(0, -2)) !== fmt(lead))
    throw new Error(`${op}: batch dimensions differ: ${fmt(a.shape)} and ${fmt(b.shape)}`);
  const batch = numelOf(lead);
  const dims = { batch, strideA: m * k, strideB: shared ? 0 : k * n, strideC: m * n };
  const out = product([...lead, m, n], a, k, (c) => runGemm(op, a, b, c, { m, n, k, transA, transB, ...dims }));
  return record(out, op, [a, b], (g) => {
    const bop = 'matmul backward';
    let da: Tensor | null = null;
    let db: Tensor | null = null;
    if (a.requiresGrad) {
      const strides = { batch, strideA: m * n, strideB: shared ? 0 : k * n, strideC: m * k };
      da = product(a.shape, a, n, (da) => {
        if (!transA) runGemm(bop, g, b, da, { m, n: k, k: n, transA: false, transB: !transB, ...strides });
        else runGemm(bop, b, g, da, { m: k, n: m, k: n, transA: transB, transB: true, ...strides, strideA: shared ? 0 : k * n, strideB: m * n });
      });
    }
    if (b.requiresGrad) {
      if (shared && transA) throw new Error(`${bop}: the gradient of a shared b needs transA false`);
      // A shared b collects every batch entry: fold the batch into the rows of a and g.
      const rows = shared ? batch * m : m;
      const strides = { batch: shared ? 1 : batch, strideA: m * k, strideB: m * n, strideC: k * n };
      db = product(b.shape, b, rows, (db) => {
        if (!transB) runGemm(bop, a, g, db, { m: k, n, k: rows, transA: !transA, transB: false, ...strides });
        else runGemm(bop, g, a, db, { m: n, n: k, k: rows, transA: true, transB: transA, ...strides, strideA: m * n, strideB: m * k });
      });
    }
    return [da, db];
  });
}
