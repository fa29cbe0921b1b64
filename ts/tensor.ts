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
const BINARY_CODE = { add: 0, sub: 1, mul: 2 } as const;

export function dtypeSize(dtype: DType): number {
  return dtype === 'bf16' ? 2 : 4;
}

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function checkShape(shape: readonly number[], op: string): number[] {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0))
    throw new Error(`${op}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
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
    native.scale(out.native('scale'), this.native('scale'), s, this.dtype, this.numel);
    return record(out, 'scale', [this], (g) => [g.scale(s)]);
  }

  sum(): Tensor {
    return this.reduce('sum', 1);
  }
  mean(): Tensor {
    if (this.numel === 0) throw new Error('mean: tensor is empty');
    return this.reduce('mean', 1 / this.numel);
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
    const out = new Tensor(native.alloc(this.device, this.numel * dtypeSize(dtype)), this.shape, dtype, this.device);
    native.cast(out.native('cast'), dtype, this.native('cast'), this.dtype, this.numel);
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

  private reduce(op: string, alpha: number): Tensor {
    if (this.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported; cast to f32 first`);
    const out = new Tensor(native.alloc(this.device, dtypeSize(this.dtype)), [], this.dtype, this.device);
    native.sum(out.native(op), this.native(op), this.dtype, this.numel, alpha);
    return record(out, op, [this], (g) => {
      const gi = new Tensor(native.alloc(this.device, this.numel * dtypeSize(this.dtype)), this.shape, this.dtype, this.device);
      native.broadcastScalar(gi.native(`${op} backward`), g.native(`${op} backward`), alpha, this.dtype, this.numel);
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

function binary(op: keyof typeof BINARY_CODE, a: Tensor, b: Tensor, backward: (g: Tensor) => Array<Tensor | null>): Tensor {
  checkSame(op, [a, b], { shape: true });
  const out = new Tensor(native.alloc(a.device, a.numel * dtypeSize(a.dtype)), a.shape, a.dtype, a.device);
  native.binary(BINARY_CODE[op], out.native(op), a.native(op), b.native(op), a.dtype, a.numel);
  if (a.dtype === 'i32') return out;
  return record(out, op, [a, b], backward);
}

/** An uninitialised tensor of the given shape and dtype on device (ops write every element of their outputs). */
export function emptyTensor(shape: readonly number[], dtype: DType, device: Device): Tensor {
  return new Tensor(native.alloc(device, numelOf(shape) * dtypeSize(dtype)), shape, dtype, device);
}

function resolveOptions(op: string, opts: TensorOptions = {}): Required<TensorOptions> {
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

/** A tensor holding data (copied now, so the array may be reused at once), laid out row-major in shape. */
export function tensor(data: Float32Array | Int32Array | number[], shape: readonly number[], opts: TensorOptions = {}): Tensor {
  const s = checkShape(shape, 'tensor');
  const n = numelOf(s);
  if (data.length !== n) throw new Error(`tensor: ${data.length} values do not fill shape ${fmt(s)} (${n} elements)`);
  const t = allocate('tensor', s, opts);
  const values = Array.isArray(data) ? (t.dtype === 'i32' ? Int32Array.from(data) : Float32Array.from(data)) : data;
  if (values instanceof Int32Array && t.dtype !== 'i32') native.upload(t.native('tensor'), Float32Array.from(values), t.dtype);
  else native.upload(t.native('tensor'), values, t.dtype);
  return t;
}

export function full(shape: readonly number[], value: number, opts: TensorOptions = {}): Tensor {
  const t = allocate('full', shape, opts);
  native.fill(t.native('full'), t.dtype, t.numel, value);
  return t;
}

export function zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 0, opts);
}

export function ones(shape: readonly number[], opts: TensorOptions = {}): Tensor {
  return full(shape, 1, opts);
}

let nextSeed = Math.floor(Math.random() * 2 ** 32);

function randomTensor(op: string, dist: 0 | 1, shape: readonly number[], opts: TensorOptions & { seed?: number }): Tensor {
  const seed = opts.seed ?? nextSeed++;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`${op}: seed must be a non-negative safe integer, got ${seed}`);
  const t = allocate(op, shape, opts);
  if (t.dtype === 'i32') throw new Error(`${op}: i32 tensors are not supported`);
  native.randomFill(t.native(op), t.dtype, t.numel, dist, Math.floor(seed / 2 ** 32), seed % 2 ** 32);
  return t;
}

/** Standard normal values; the same seed gives the same values on every backend. */
export function randn(shape: readonly number[], opts: TensorOptions & { seed?: number } = {}): Tensor {
  return randomTensor('randn', 0, shape, opts);
}

/** Uniform values in [0, 1); the same seed gives the same values on every backend. */
export function rand(shape: readonly number[], opts: TensorOptions & { seed?: number } = {}): Tensor {
  return randomTensor('rand', 1, shape, opts);
}

export { isGradEnabled };
