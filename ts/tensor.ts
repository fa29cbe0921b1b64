// Tensor: a contiguous n-d array on one backend, with shape and dtype, and autograd bookkeeping.
// Ops queue work on the tensor's backend and return at once; `await t.toArray()` is the only wait.
import { GradNode, isGradEnabled, needsGrad, noGrad, runBackward } from './autograd';
import { DType, Device, native, NativeBuffer } from './native';
import { adopt, registerTensorClass } from './scope';

export type { DType, Device } from './native';

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

const DTYPES: readonly DType[] = ['f32', 'bf16', 'i32'];
const DEVICES: readonly Device[] = ['cpu', 'cuda', 'sim'];

export function dtypeSize(dtype: DType): number {
  return dtype === 'bf16' ? 2 : 4;
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function checkShape(shape: readonly number[], op: string): number[] {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0))
    throw new Error(`${op}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  // Past 2^53 the element count is no longer exact, so every size and byte count derived from it would be wrong.
  if (!Number.isSafeInteger(numelOf(shape))) throw new Error(`${op}: shape ${JSON.stringify(shape)} has too many elements`);
  return [...shape];
}

function checkDtype(dtype: unknown, op: string): DType {
  if (!DTYPES.includes(dtype as DType)) throw new Error(`${op}: unknown dtype ${JSON.stringify(dtype)} (expected f32, bf16 or i32)`);
  return dtype as DType;
}

function checkDevice(device: unknown, op: string): Device {
  if (!DEVICES.includes(device as Device))
    throw new Error(`${op}: unknown device ${JSON.stringify(device)} (expected cpu, cuda or sim)`);
  return device as Device;
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: Device;
  requiresGrad: boolean;
  grad: Tensor | null = null;
  /** How this tensor was computed, when autograd recorded it. */
  gradNode: GradNode | null = null;
  private buffer: NativeBuffer | null;

  /** Wraps a native buffer; use tensor(), zeros(), randn() or an op to make tensors. */
  constructor(buffer: NativeBuffer, shape: readonly number[], dtype: DType, device: Device, requiresGrad = false) {
    this.buffer = buffer;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.device = device;
    if (requiresGrad && dtype === 'i32') throw new Error('requiresGrad: i32 tensors cannot require a gradient');
    this.requiresGrad = requiresGrad;
    adopt(this);
  }

  get numel(): number {
    return numelOf(this.shape);
  }
  get disposed(): boolean {
    return this.buffer === null;
  }

  /** The native buffer, or an Error naming the op when the tensor was disposed. */
  native(op: string): NativeBuffer {
    if (!this.buffer) throw new Error(`${op}: tensor was disposed`);
    return this.buffer;
  }

  /** Copies the values to a Float32Array once all queued work on them is done; never blocks the event loop. */
  toArray(): Promise<Float32Array> {
    try {
      return native.read(this.native('toArray'), this.dtype, this.numel);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.numel !== 1) throw new Error(`item: tensor has ${this.numel} elements, not 1`);
    return (await this.toArray())[0];
  }

  /** Frees the memory now (otherwise garbage collection frees it). Using the tensor afterwards is an Error. */
  dispose(): void {
    this.buffer?.release();
    this.buffer = null;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  to(device: Device): Tensor {
    checkDevice(device, 'to');
    if (device === this.device) return this;
    const out = new Tensor(native.copyTo(this.native('to'), device), this.shape, this.dtype, device);
    return record(out, 'to', [this], (g) => [g.to(this.device)]);
  }

  add(other: Tensor): Tensor {
    return binary('add', this, other, (g) => [g.alias(), g.alias()]);
  }
  sub(other: Tensor): Tensor {
    return binary('sub', this, other, (g) => [g.alias(), g.scale(-1)]);
  }
  mul(other: Tensor): Tensor {
    return binary('mul', this, other, (g) => [g.mul(other), g.mul(this)]);
  }

  scale(s: number): Tensor {
    if (typeof s !== 'number' || !Number.isFinite(s)) throw new Error(`scale: factor must be a finite number, got ${s}`);
    if (this.dtype === 'i32') throw new Error('scale: i32 tensors are not supported');
    const out = this.empty('scale');
    if (this.numel > 0) native.scale({ out: out.native('scale'), a: this.native('scale'), alpha: s, dtype: this.dtype, n: this.numel });
    return record(out, 'scale', [this], (g) => [g.scale(s)]);
  }

  /** The sum of all elements; 0 for an empty tensor, as in PyTorch. */
  sum(): Tensor {
    return this.reduce('sum', 1, 0);
  }
  /** The mean of all elements; NaN (0 / 0) for an empty tensor, as in PyTorch. */
  mean(): Tensor {
    return this.reduce('mean', 1 / this.numel, NaN);
  }

  /** Same values in a new shape with the same element count; shares memory with this tensor. */
  reshape(shape: readonly number[]): Tensor {
    const s = checkShape(shape, 'reshape');
    if (numelOf(s) !== this.numel)
      throw new Error(`reshape: cannot reshape ${fmt(this.shape)} (${this.numel} elements) to ${fmt(s)} (${numelOf(s)} elements)`);
    const out = new Tensor(this.native('reshape').alias(), s, this.dtype, this.device);
    return record(out, 'reshape', [this], (g) => [g.reshape(this.shape)]);
  }

  cast(dtype: DType): Tensor {
    checkDtype(dtype, 'cast');
    const input = this.native('cast');
    const out = new Tensor(native.alloc(this.device, this.numel * dtypeSize(dtype)), this.shape, dtype, this.device);
    if (this.numel > 0) native.cast({ out: out.native('cast'), outDtype: dtype, a: input, aDtype: this.dtype, n: this.numel });
    if (dtype === 'i32' || this.dtype === 'i32') return out;
    return record(out, 'cast', [this], (g) => [g.cast(this.dtype)]);
  }

  /** A tensor sharing this one's memory, cut off from the autograd graph. */
  detach(): Tensor {
    return new Tensor(this.native('detach').alias(), this.shape, this.dtype, this.device);
  }
  /** Same memory, same graph position: a second handle that can be disposed on its own. */
  alias(): Tensor {
    const out = new Tensor(this.native('alias').alias(), this.shape, this.dtype, this.device, this.requiresGrad);
    out.gradNode = this.gradNode;
    return out;
  }

  /** Reverse-mode autograd from this scalar; gradients accumulate into `.grad` of the leaves. */
  backward(): void {
    if (this.numel !== 1) throw new Error(`backward: output must be a scalar, got shape ${fmt(this.shape)}`);
    if (!this.requiresGrad) throw new Error('backward: tensor does not require a gradient (no input had requiresGrad)');
    const seed = full([], 1, { dtype: this.dtype, device: this.device });
    runBackward(this, seed);
    seed.dispose();
  }

  /** Adds g into .grad (autograd calls this on leaves). */
  accumulateGrad(g: Tensor): void {
    if (!this.grad) {
      this.grad = g.alias();
      this.grad.requiresGrad = false;
      this.grad.gradNode = null;
    } else {
      const sum = noGrad(() => this.grad!.add(g));
      this.grad.dispose();
      this.grad = sum;
    }
  }

  zeroGrad(): void {
    this.grad?.dispose();
    this.grad = null;
  }

  toString(): string {
    return `Tensor(${fmt(this.shape)}, ${this.dtype}, ${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  private empty(op: string): Tensor {
    this.native(op);
    return new Tensor(native.alloc(this.device, this.numel * dtypeSize(this.dtype)), this.shape, this.dtype, this.device);
  }

  // alpha · Σ; an empty tensor gives `empty` without a kernel (reductions are launched over at least one element).
  private reduce(op: string, alpha: number, empty: number): Tensor {
    if (this.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported; cast to f32 first`);
    const input = this.native(op);
    const out = new Tensor(native.alloc(this.device, dtypeSize(this.dtype)), [], this.dtype, this.device);
    if (this.numel > 0) native.sum({ out: out.native(op), a: input, dtype: this.dtype, n: this.numel, alpha });
    else native.fill({ out: out.native(op), dtype: this.dtype, n: 1, value: empty });
    return record(out, op, [this], (g) => {
      const gi = new Tensor(native.alloc(this.device, this.numel * dtypeSize(this.dtype)), this.shape, this.dtype, this.device);
      if (this.numel > 0) native.broadcastScalar({ out: gi.native(`${op} backward`), scalar: g.native(`${op} backward`), alpha, dtype: this.dtype, n: this.numel });
      return [gi];
    });
  }
}

registerTensorClass(Tensor);

/** Checks what every op over several tensors needs: none disposed, one device, one dtype, (optionally) one shape. */
export function checkSame(op: string, tensors: readonly Tensor[], opts: { shape?: boolean } = {}): void {
  const [first] = tensors;
  for (const t of tensors) {
    if (!(t instanceof Tensor)) throw new Error(`${op}: expected a Tensor, got ${typeof t}`);
    t.native(op);
    if (t.device !== first.device) throw new Error(`${op}: tensors are on different devices (${first.device} and ${t.device})`);
    if (t.dtype !== first.dtype) throw new Error(`${op}: dtype mismatch (${first.dtype} and ${t.dtype})`);
    if (opts.shape && (t.shape.length !== first.shape.length || t.shape.some((d, i) => d !== first.shape[i])))
      throw new Error(`${op}: shape mismatch (${fmt(first.shape)} and ${fmt(t.shape)})`);
  }
}

/** Attaches a GradNode to out when autograd is on and some input requires a gradient. */
export function record(
  out: Tensor,
  op: string,
  inputs: readonly Tensor[],
  backward: (g: Tensor) => Array<Tensor | null>,
): Tensor {
  if (needsGrad(inputs)) {
    out.requiresGrad = true;
    out.gradNode = { op, inputs, backward };
  }
  return out;
}

function binary(op: 'add' | 'sub' | 'mul', a: Tensor, b: Tensor, backward: (g: Tensor) => Array<Tensor | null>): Tensor {
  checkSame(op, [a, b], { shape: true });
  // Kernels are never launched over zero elements (a zero-size GPU grid is an error): an empty result needs no work.
  const out = new Tensor(native.alloc(a.device, a.numel * dtypeSize(a.dtype)), a.shape, a.dtype, a.device);
  if (a.numel > 0) native.binary({ op, out: out.native(op), a: a.native(op), b: b.native(op), dtype: a.dtype, n: a.numel });
  if (a.dtype === 'i32') return out;
  return record(out, op, [a, b], backward);
}

/** An uninitialised tensor of the given shape and dtype on device (ops write every element of their outputs). */
export function emptyTensor(shape: readonly number[], dtype: DType, device: Device): Tensor {
  return new Tensor(native.alloc(device, numelOf(shape) * dtypeSize(dtype)), shape, dtype, device);
}

function resolveOptions(op: string, opts: TensorOptions = {}): Required<TensorOptions> {
  if (typeof opts !== 'object' || opts === null) throw new Error(`${op}: options must be an object, got ${describeValue(opts)}`);
  if (opts.requiresGrad !== undefined && typeof opts.requiresGrad !== 'boolean')
    throw new Error(`${op}: requiresGrad must be a boolean, got ${describeValue(opts.requiresGrad)}`);
  return {
    dtype: checkDtype(opts.dtype ?? 'f32', op),
    device: checkDevice(opts.device ?? 'cpu', op),
    requiresGrad: opts.requiresGrad ?? false,
  };
}

function allocate(op: string, shape: readonly number[], opts: TensorOptions): Tensor {
  const s = checkShape(shape, op);
  const o = resolveOptions(op, opts);
  return new Tensor(native.alloc(o.device, numelOf(s) * dtypeSize(o.dtype)), s, o.dtype, o.device, o.requiresGrad);
}

/** What a value is, for an error message: `a string ("a")`, `an object`, `undefined`. */
function describeValue(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `a string (${JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}…` : v)})`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `a ${typeof v} (${String(v)})`;
  return typeof v === 'object' ? `an object (${v.constructor?.name ?? 'Object'})` : `a ${typeof v}`;
}

const I32_MIN = -(2 ** 31);
const I32_MAX = 2 ** 31 - 1;

/** Why v cannot be stored as dtype, or null when it can. NaN and ±Infinity are floats like any other; i32 holds integers. */
function badValue(v: unknown, dtype: DType): string | null {
  if (typeof v !== 'number') return `is ${describeValue(v)}, not a number`;
  if (dtype !== 'i32') return null;
  if (!Number.isInteger(v)) return `= ${v} is not an integer, which dtype i32 needs`;
  if (v < I32_MIN || v > I32_MAX) return `= ${v} is out of the i32 range [${I32_MIN}, ${I32_MAX}]`;
  return null;
}

/** Nested arrays of numbers, one level per dimension of the shape they are given with. */
export type NestedNumbers = ReadonlyArray<number | NestedNumbers>;

/** Numeric typed arrays are read by value (converted as PyTorch's torch.tensor would); BigInt arrays are refused. */
export type TensorData = ArrayLike<number> | NestedNumbers;

// The values of data in row-major order, each with its index as data[i] (or data[i][j] for nested arrays).
function flatValues(data: unknown, s: readonly number[]): { values: ArrayLike<unknown>; at: (i: number) => string } {
  if (ArrayBuffer.isView(data)) {
    if (data instanceof DataView || data instanceof BigInt64Array || data instanceof BigUint64Array)
      throw new Error(`tensor: data must hold numbers; a ${data.constructor.name} is not supported`);
    return { values: data as unknown as ArrayLike<number>, at: (i) => `data[${i}]` };
  }
  if (!Array.isArray(data)) throw new Error(`tensor: data must be an array or a typed array of numbers, got ${describeValue(data)}`);
  if (!data.some(Array.isArray)) return { values: data, at: (i) => `data[${i}]` };
  // Nested: every level must have exactly the length the shape gives it, so no value lands in the wrong place.
  const values: unknown[] = [];
  const walk = (v: unknown, dim: number, path: string): void => {
    if (dim === s.length) {
      if (Array.isArray(v))
        throw new Error(`tensor: ${path} is an array, but shape ${fmt(s)} has only ${s.length} dimension${s.length === 1 ? '' : 's'}`);
      values.push(v);
      return;
    }
    if (!Array.isArray(v))
      throw new Error(`tensor: ${path} is ${describeValue(v)}, but shape ${fmt(s)} needs an array of ${s[dim]} there (dimension ${dim})`);
    if (v.length !== s[dim])
      throw new Error(`tensor: ${path} has ${v.length} entries, but shape ${fmt(s)} needs ${s[dim]} along dimension ${dim}`);
    for (let i = 0; i < v.length; i++) walk(v[i], dim + 1, `${path}[${i}]`);
  };
  walk(data, 0, 'data');
  // The nested index of flat element i, from the shape (row-major).
  const at = (i: number) => {
    let path = '';
    for (let d = s.length - 1; d >= 0; d--) {
      path = `[${i % s[d]}]${path}`;
      i = Math.floor(i / s[d]);
    }
    return `data${path}`;
  };
  return { values, at };
}

/**
 * A tensor holding data (copied now, so the array may be reused at once), laid out row-major in shape: a flat
 * array or typed array of product(shape) numbers, or nested arrays matching shape level by level.
 */
export function tensor(data: TensorData, shape: readonly number[], opts: TensorOptions = {}): Tensor {
  const s = checkShape(shape, 'tensor');
  const n = numelOf(s);
  const { values, at } = flatValues(data, s);
  if (values.length !== n) throw new Error(`tensor: ${values.length} values do not fill shape ${fmt(s)} (${n} elements)`);
  const dtype = checkDtype(opts?.dtype ?? 'f32', 'tensor');
  const target = dtype === 'i32' ? Int32Array : Float32Array;
  // A Float32Array for f32 or bf16 and an Int32Array for i32 hold only valid values and go up as they are; any
  // other data is converted element by element, each checked on the way.
  let upload: Float32Array | Int32Array;
  if (values instanceof target) upload = values;
  else {
    upload = new target(n);
    for (let i = 0; i < n; i++) {
      const v = values[i];
      const bad = badValue(v, dtype);
      if (bad) throw new Error(`tensor: ${at(i)} ${bad}`);
      upload[i] = v as number;
    }
  }
  const t = allocate('tensor', s, opts);
  if (n > 0) native.upload(t.native('tensor'), upload, t.dtype);
  return t;
}

/** A tensor of the given shape with every element value. */
export function full(shape: readonly number[], value: number, opts: TensorOptions = {}): Tensor {
  const bad = badValue(value, checkDtype(opts?.dtype ?? 'f32', 'full'));
  if (bad) throw new Error(`full: value ${bad}`);
  const t = allocate('full', shape, opts);
  if (t.numel > 0) native.fill({ out: t.native('full'), dtype: t.dtype, n: t.numel, value });
  return t;
}

export function zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 0, opts);
}

export function ones(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 1, opts);
}

let nextSeed = Math.floor(Math.random() * 2 ** 32);

function randomTensor(op: string, dist: 'normal' | 'uniform', shape: readonly number[], opts: TensorOptions & { seed?: number }): Tensor {
  const seed = opts.seed ?? nextSeed++;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`${op}: seed must be a non-negative safe integer, got ${seed}`);
  const t = allocate(op, shape, opts);
  if (t.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported`);
  if (t.numel > 0) native.randomFill({ out: t.native(op), dtype: t.dtype, n: t.numel, distribution: dist, seedHi: Math.floor(seed / 2 ** 32), seedLo: seed % 2 ** 32 });
  return t;
}

/** Standard normal values; the same seed gives the same values on every backend. */
export function randn(shape: readonly number[], opts: TensorOptions & { seed?: number } = {}): Tensor {
  return randomTensor('randn', 'normal', shape, opts);
}

/** Uniform values in [0, 1); the same seed gives the same values on every backend. */
export function rand(shape: readonly number[], opts: TensorOptions & { seed?: number } = {}): Tensor {
  return randomTensor('rand', 'uniform', shape, opts);
}

export { isGradEnabled };
