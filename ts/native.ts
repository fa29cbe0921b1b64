// The native addon, loaded once on first use (a local build or the platform package), and the shape of what it exports.
// Nothing outside ts/ talks to it directly.
import * as fs from 'fs';
import * as path from 'path';

import { packageJson, packageRoot } from './package-root';

export type DType = 'f32' | 'bf16' | 'i32';
export type Device = 'cpu' | 'cuda' | 'sim';
/** The pointwise activations the native activation family computes (ts/ops/activation.ts). */
export type ActivationKindName = 'gelu' | 'relu' | 'silu' | 'sigmoid' | 'quickGelu' | 'geluTanh';

export interface NativeBuffer {
  readonly bytes: number;
  readonly backend: Device | null;
  release(): void;
  alias(): NativeBuffer;
}

export interface BackendInfo {
  name: Device;
  compiled: boolean;
  available: boolean;
  device?: string;
  reason?: string;
}

/** A product's sizes and operand layout: see native/gemm/gemm.h (Geometry). Strides are elements between batch entries (0: shared). */
export interface GemmGeometry {
  batch: number;
  m: number;
  n: number;
  k: number;
  /** a is [K, M] rather than [M, K] */
  transA: boolean;
  /** b is [N, K] rather than [K, N] */
  transB: boolean;
  strideA: number;
  strideB: number;
  strideC: number;
}

export interface GemmArgs {
  a: NativeBuffer;
  b: NativeBuffer;
  c: NativeBuffer;
  geometry: GemmGeometry;
  bias?: NativeBuffer;
  /** activation::Kind: 0 none, 1 gelu, 2 relu, 5 quickGelu, 6 geluTanh (the kinds the epilogue fuses) */
  activation: 0 | 1 | 2 | 5 | 6;
  residual?: NativeBuffer;
  preactivation?: NativeBuffer;
  dtype: DType;
}

/** A LayerNorm over the last dimension: see native/norm/norm.h (Geometry). weight and bias are in paramDtype (dtype or f32). */
export interface LayerNormGeometry {
  rows: number;
  cols: number;
  dtype: DType;
  paramDtype: DType;
}

/** a [rows, cols] summed over its rows into [cols]: see native/reduce/reduce.h (RowsGeometry). */
export interface SumRowsGeometry {
  rows: number;
  cols: number;
}

/** One AdamW step's settings: see native/optim/optim.h (AdamSettings). step is the 1-based count the bias corrections use. */
export interface AdamwSettings {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
}

/** One part (summary or features) of a teacher term as the native loss op takes it. */
export interface NativeLossPart {
  student: NativeBuffer;
  teacher: NativeBuffer;
  studentDtype: DType;
  teacherDtype: DType;
  channels: number;
  /** Receives d total / d student (student dtype) when given. */
  grad?: NativeBuffer;
  /** One f32: the unweighted loss of this part. */
  out: NativeBuffer;
}

export interface NativeLossTerm {
  batch: number;
  lambda: number;
  gamma: number;
  summary?: NativeLossPart;
  features?: NativeLossPart & { studentGrid: [number, number]; teacherGrid: [number, number] };
}

/** What the interpolation kernels sample: see native/interpolate/interpolate.h (Geometry). */
export interface InterpolateGeometry {
  layout: 'NCHW' | 'NLC';
  mode: 'bilinear' | 'nearest' | 'gridSample' | 'bicubic';
  alignCorners: boolean;
  /** bilinear and bicubic: PyTorch's antialias=True. */
  antialias?: boolean;
  /** PyTorch's scale_factor per axis (absent: the ratio is in/virt). */
  factorH?: number;
  factorW?: number;
  batch: number;
  channels: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  /** The resized size the sampling ratio comes from; larger than out* for the CPE crop (ignored by gridSample). */
  virtH: number;
  virtW: number;
}

/** An attention problem: see native/attention/attention.h (Geometry). window 0 is global attention. */
export interface AttentionGeometry {
  batch: number;
  tokens: number;
  heads: number;
  headDim: number;
  prefix: number;
  window: number;
  gridH: number;
  gridW: number;
  scale: number;
  /** The token grid of SAM's decomposed relative position terms (global mode, T = relGridH·relGridW); absent: none. */
  relGridH?: number;
  relGridW?: number;
}

/** Images [batch, channels, height, width] cut into patch × patch squares: see native/tokens/tokens.h (PatchifyGeometry). */
export interface PatchifyGeometry {
  batch: number;
  channels: number;
  height: number;
  width: number;
  patch: number;
}

/** Tokens [batch, prefixRows + rows, dim] from a prefix and patches (+ pos): see native/tokens/tokens.h (AssembleGeometry). */
export interface AssembleGeometry {
  batch: number;
  prefixRows: number;
  rows: number;
  dim: number;
  /** prefix is [batch, prefixRows, dim] rather than shared [prefixRows, dim] */
  prefixBatched: boolean;
  /** pos is [batch, rows, dim] rather than shared [rows, dim] */
  posBatched: boolean;
}

/** x [batch, inRows, dim] gathered into [batch, outRows, dim]: see native/tokens/tokens.h (GatherGeometry). */
export interface GatherRowsGeometry {
  batch: number;
  inRows: number;
  outRows: number;
  dim: number;
}

/** A convolution's sizes: see native/conv/conv.h (Geometry). Pairs are [height, width]. */
export interface ConvGeometry {
  batch: number;
  inC: number;
  inH: number;
  inW: number;
  outC: number;
  outH: number;
  outW: number;
  groups: number;
  kernel: [number, number];
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
}

/** A strided copy as the layout kernels walk it: see native/layout/layout.h (CopyPlan). */
export interface LayoutCopyPlan {
  /** The iteration space, row-major; at most 6 dims. */
  sizes: number[];
  srcStrides: number[];
  dstStrides: number[];
  srcOffset?: number;
  dstOffset?: number;
  /** Coordinates = Σ index·coef − lo checked against [0, extent): a source axis pads outside, a destination axis skips. */
  axes?: Array<{ coef: number[]; lo: number; extent: number; stride: number; dst?: boolean }>;
  /** What a source axis reads outside its extent; default 'zero'. */
  mode?: 'zero' | 'reflect' | 'replicate';
  /** Multiplies every value (floats only); default 1. */
  scale?: number;
}

/** A reflect / replicate pad's backward: see native/layout/layout.h (PadGeometry). (0, 0) of the output is the input's (-top, -left). */
export interface LayoutPadGeometry {
  planes: number;
  /** Elements per pixel: 1 for NCHW maps, C for NHWC (default 1). */
  inner?: number;
  inH: number;
  inW: number;
  outH: number;
  outW: number;
  top: number;
  left: number;
  mode: 'reflect' | 'replicate';
}

/** out [outer, inner] = alpha · Σ_k x [outer, n, inner]: see native/layout/layout.h (ReduceGeometry). */
export interface LayoutReduceGeometry {
  outer: number;
  n: number;
  inner: number;
  alpha: number;
}

/** The [n, c, hw] view of an NCHW tensor the batchnorm family's calls share, and the storage dtypes: see native/batchnorm/batchnorm.h (Geometry). */
export interface BatchNormGeometry {
  n: number;
  c: number;
  hw: number;
  dtype: DType;
  /** weight and bias (and their gradients): dtype or f32. */
  paramDtype: DType;
}

interface NchwCall {
  geometry: BatchNormGeometry;
}

export interface BatchNormForwardArgs extends NchwCall {
  y: NativeBuffer;
  x: NativeBuffer;
  weight?: NativeBuffer;
  bias?: NativeBuffer;
  runningMean?: NativeBuffer;
  runningVar?: NativeBuffer;
  /** [c] f32 out, kept for backward: the statistics used (in training the mean of x − x[0, c, 0]). */
  mean: NativeBuffer;
  invstd: NativeBuffer;
  eps: number;
  momentum: number;
  training: boolean;
  statsDtype: DType;
}

export interface BatchNormBackwardArgs extends NchwCall {
  dx?: NativeBuffer;
  dweight?: NativeBuffer;
  dbias?: NativeBuffer;
  dy: NativeBuffer;
  x: NativeBuffer;
  weight?: NativeBuffer;
  mean: NativeBuffer;
  invstd: NativeBuffer;
  training: boolean;
}

export interface LayerNorm2dForwardArgs extends NchwCall {
  y: NativeBuffer;
  /** [n, hw] f32 out, kept for backward. */
  mean: NativeBuffer;
  rstd: NativeBuffer;
  x: NativeBuffer;
  weight: NativeBuffer;
  bias: NativeBuffer;
  eps: number;
}

export interface LayerNorm2dBackwardArgs extends NchwCall {
  dx: NativeBuffer;
  dweight: NativeBuffer;
  dbias: NativeBuffer;
  dy: NativeBuffer;
  x: NativeBuffer;
  weight: NativeBuffer;
  mean: NativeBuffer;
  rstd: NativeBuffer;
}

/** The CPE train crop's per-sample parameters (f32 on the op's device), given exactly for mode gridSample. */
export interface InterpolateCrop {
  scale?: NativeBuffer;
  offset?: NativeBuffer;
  keep?: NativeBuffer;
}

export interface NativeAddon {
  backends(): BackendInfo[];
  alloc(device: Device, bytes: number): NativeBuffer;
  upload(buf: NativeBuffer, data: Float32Array | Int32Array, dtype: DType): void;
  read(buf: NativeBuffer, dtype: DType, count: number): Promise<Float32Array>;
  copyTo(buf: NativeBuffer, device: Device): NativeBuffer;
  memory(): Partial<Record<Device, { inUse: number; cached: number }>>;
  synchronize(device: Device): Promise<void>;
  emptyCache(device: Device): void;
  setPoisonAllocations(on: boolean): void;
  queueFailure(device: Device, message: string): void;
  setProfiling(device: Device, on: boolean): void;
  takeProfile(device: Device): Array<{ op: string; calls: number; ms: number }>;
  /** Drops this environment's queued work and stops its backends (idempotent); later ops throw. */
  shutdownEnvironment(): void;
  setQueueDepth(depth: number): void;
  queueDepth(): number;

  fill(args: { out: NativeBuffer; dtype: DType; n: number; value: number }): void;
  binary(args: { op: 'add' | 'sub' | 'mul'; out: NativeBuffer; a: NativeBuffer; b: NativeBuffer; dtype: DType; n: number }): void;
  scale(args: { out: NativeBuffer; a: NativeBuffer; alpha: number; dtype: DType; n: number }): void;
  /** out[i] = alpha · scalar[0]. */
  broadcastScalar(args: { out: NativeBuffer; scalar: NativeBuffer; alpha: number; dtype: DType; n: number }): void;
  cast(args: { out: NativeBuffer; outDtype: DType; a: NativeBuffer; aDtype: DType; n: number }): void;
  /** out[0] = alpha · Σ a. */
  sum(args: { out: NativeBuffer; a: NativeBuffer; dtype: DType; n: number; alpha: number }): void;
  /** LayerNorm over cols of [rows, cols]; mean and rstd [rows] f32 out; weight and bias in dtype or f32 (paramDtype). */
  layerNormForward(args: { y: NativeBuffer; mean: NativeBuffer; rstd: NativeBuffer; x: NativeBuffer; weight: NativeBuffer; bias: NativeBuffer;
    eps: number; geometry: LayerNormGeometry }): void;
  layerNormBackward(args: { dx: NativeBuffer; dweight: NativeBuffer; dbias: NativeBuffer; dy: NativeBuffer; x: NativeBuffer; weight: NativeBuffer;
    mean: NativeBuffer; rstd: NativeBuffer; geometry: LayerNormGeometry }): void;
  batchNormForward(args: BatchNormForwardArgs): void;
  batchNormBackward(args: BatchNormBackwardArgs): void;
  layerNorm2dForward(args: LayerNorm2dForwardArgs): void;
  layerNorm2dBackward(args: LayerNorm2dBackwardArgs): void;
  activationForward(args: { kind: ActivationKindName; y: NativeBuffer; x: NativeBuffer; n: number; dtype: DType }): void;
  /** dx = dy · f'(x). */
  activationBackward(args: { kind: ActivationKindName; dx: NativeBuffer; dy: NativeBuffer; x: NativeBuffer; n: number; dtype: DType }): void;
  gemm(args: GemmArgs): void;
  /**
   * out [B, T, D] and lse [B·heads·windows·L] (f32) from qkv [B, T, 3D] (+ bias [heads, L, L], + relH [B, heads, T,
   * relGridH] and relW [B, heads, T, relGridW] with the geometry's relGrid).
   */
  attentionForward(args: { out: NativeBuffer; lse: NativeBuffer; qkv: NativeBuffer; bias?: NativeBuffer; relH?: NativeBuffer; relW?: NativeBuffer;
    dtype: DType; geometry: AttentionGeometry }): void;
  /** dqkv (and dbias exactly when bias is given, drelH and drelW exactly when relH and relW are), written, not added to. */
  attentionBackward(args: { dqkv: NativeBuffer; dbias?: NativeBuffer; drelH?: NativeBuffer; drelW?: NativeBuffer; dout: NativeBuffer; qkv: NativeBuffer;
    out: NativeBuffer; lse: NativeBuffer; bias?: NativeBuffer; relH?: NativeBuffer; relW?: NativeBuffer; dtype: DType; geometry: AttentionGeometry }): void;
  /** null when attention runs this head dim and dtype (with these features) on every backend, else why not (naming it). */
  attentionUnsupported(headDim: number, dtype: DType, features?: { window?: boolean; prefix?: boolean; relPos?: boolean }): string | null;
  /** out[c] = Σ over rows of a[r, c]. */
  sumRows(args: { out: NativeBuffer; a: NativeBuffer; dtype: DType; geometry: SumRowsGeometry }): void;
  adamwStep(args: {
    entries: Array<{ param: NativeBuffer; grad: NativeBuffer; m: NativeBuffer; v: NativeBuffer; master?: NativeBuffer; n: number; dtype: DType }>;
    settings: AdamwSettings;
  }): void;
  /** out (2 f32) = [Σ g² over every entry, clip coefficient min(1, maxNorm / (‖g‖ + 1e-6)) (1 when not finite or maxNorm ≤ 0)]; apply scales every grad by it. */
  gradNorm(args: { entries: Array<{ grad: NativeBuffer; n: number; dtype: DType }>; out: NativeBuffer; maxNorm: number; apply: boolean }): void;
  blasInfo(): { loaded: boolean; library?: string; error?: string };
  /** CUDA API versions (1000 * major + 10 * minor); 0 where there is none (no driver, or a build without CUDA). */
  cudaVersions(): { runtime: number; driver: number; requiredDriver: number };
  setUseBlas(on: boolean): void;
  setMmaTile(tile: 'auto' | 'small' | 'large'): void;
  /** How often each bf16 implicit-GEMM conv path has run (cuda and sim, process-wide, counted as the work runs). */
  convImplicitCounts(): { forward: number; backwardInput: number; backwardWeight: number };
  cpuBf16Amx(): { supported: boolean; enabled: boolean };
  setUseBf16Amx(on: boolean): void;
  /** false when this CPU cannot run that micro-kernel (the choice is then unchanged). */
  setCpuGemmKernel(kernel: 'auto' | 'avx512' | 'avx2' | 'generic'): boolean;
  cpuGemmKernel(): string;
  /** The cpu backend's serial f32 product (native/gemm/cpu_kernel.h), row-major with leading dimensions. */
  cpuSgemmSerial(args: { a: NativeBuffer; b: NativeBuffer; c: NativeBuffer; transA: boolean; transB: boolean; m: number; n: number; k: number;
    alpha: number; beta: number; lda: number; ldb: number; ldc: number }): void;
  /** Philox fill; the 64-bit seed as two 32-bit halves. */
  randomFill(args: { out: NativeBuffer; dtype: DType; n: number; distribution: 'normal' | 'uniform'; seedHi: number; seedLo: number }): void;
  /** Writes total (one f32) and each part's out and grad. */
  multiTeacherLoss(args: { terms: NativeLossTerm[]; mode: 'cosine+smoothl1' | 'mse'; alpha: number; beta: number; delta: number; total: NativeBuffer }): void;
  /** null when one multiTeacherLoss call takes that many teacher terms, else why not (native/loss/loss.h's limit). */
  lossUnsupported(terms: number): string | null;
  /** out = grad * scalar[0], scalar one f32. */
  lossGradScale(args: { out: NativeBuffer; grad: NativeBuffer; dtype: DType; n: number; scalar: NativeBuffer }): void;
  /** The sim scheduler's seed (AMR_SIM_SEED's programmatic form), queued on sim; sim builds only. */
  simSetSeed(seed: bigint): void;
  simSeed(): bigint;
  /** Opens the MPI library and initialises MPI (once per process); throws naming the libraries looked for. */
  distInit(args: { timeoutSeconds: number }): { rank: number; size: number; library: string; version: string };
  /** In place on n f32 of a cpu buffer, queued: the sum over ranks, or the mean. */
  distAllReduce(args: { buffer: NativeBuffer; n: number; op: 'sum' | 'mean' }): void;
  /** Root's first `bytes` bytes into every rank's buffer (cpu), queued. */
  distBroadcast(args: { buffer: NativeBuffer; bytes: number; root: number }): void;
  /** Queued on this environment's cpu backend: synchronize('cpu') waits for it. */
  distBarrier(): void;
  /** Every rank's first `bytes` bytes of input, in rank order, into output (cpu), queued. */
  distAllGather(args: { input: NativeBuffer; output: NativeBuffer; bytes: number }): void;
  /** MPI_Finalize (every rank must call it); idempotent. */
  distFinalize(): void;
  /** Ends every rank of the job with this exit code (MPI_Abort). */
  distAbort(args: { code: number }): never;
  /** Opens NCCL (once per process); throws naming the files looked for and AM_RADIO_NCCL_LIBRARY. */
  ncclLibrary(): { library: string; version: number; versionText: string };
  /** ncclGetUniqueId: 128 bytes that rank 0 hands to every rank. */
  ncclUniqueId(): Uint8Array;
  /** ncclCommInitRank off the JS thread; resolves once every rank has joined. One communicator per process. */
  ncclInit(args: { id: Uint8Array; rank: number; size: number }): Promise<void>;
  /** In place on n elements of a cuda buffer, on its stream: the sum over ranks, or the mean. */
  ncclAllReduce(args: { buffer: NativeBuffer; n: number; dtype: 'f32' | 'bf16'; op: 'sum' | 'mean' }): void;
  /** Root's first `bytes` bytes into every rank's cuda buffer, on its stream. */
  ncclBroadcast(args: { buffer: NativeBuffer; bytes: number; root: number }): void;
  /** Every rank's first `bytes` bytes of input, in rank order, into output (cuda), on its stream. */
  ncclAllGather(args: { input: NativeBuffer; output: NativeBuffer; bytes: number }): void;
  /** Aborts the communicator now (a peer is gone): later collectives and the next cuda read report reason. */
  ncclAbort(args: { reason: string }): void;
  /** ncclCommDestroy (every rank, after synchronize('cuda')); idempotent. */
  ncclDestroy(): void;
  /** The GPUs this process sees (after CUDA_VISIBLE_DEVICES); 0 without a driver or CUDA. */
  cudaDeviceCount(): number;
  /** The first `bytes` bytes of buffer, unconverted, once the work queued before the call is done. */
  readBytes(buffer: NativeBuffer, bytes: number): Promise<ArrayBuffer>;
  /** scale, offset and keep (f32) are given exactly for mode gridSample. */
  interpolate(args: { out: NativeBuffer; x: NativeBuffer; dtype: DType; geometry: InterpolateGeometry } & InterpolateCrop): void;
  /** gradIn is written, not added to. */
  interpolateBackward(args: { gradIn: NativeBuffer; gradOut: NativeBuffer; dtype: DType; geometry: InterpolateGeometry } & InterpolateCrop): void;
  /** images [B, C, H, W] → out [B, (H/P)·(W/P), C·P²], (x − mean[c]) / std[c]; mean and std are C f32 values. */
  patchify(args: { out: NativeBuffer; outDtype: DType; x: NativeBuffer; xDtype: DType; mean: NativeBuffer; std: NativeBuffer;
    geometry: PatchifyGeometry }): void;
  /** null when patchify cuts images of this geometry (sizes may be 0 here), else why not (native/tokens/tokens.h). */
  patchifyUnsupported(geometry: PatchifyGeometry): string | null;
  /** out [B, S + N, D] = cat(prefix ([S, D], or [B, S, D] when prefixBatched), patches + pos ([N, D], or [B, N, D])). */
  assembleTokens(args: { out: NativeBuffer; prefix: NativeBuffer; patches: NativeBuffer; pos?: NativeBuffer; dtype: DType; geometry: AssembleGeometry }): void;
  /** y = act(conv(x, weight) + bias) + residual; preactivation receives conv(x, weight) + bias. */
  conv2d(args: { y: NativeBuffer; x: NativeBuffer; weight: NativeBuffer; bias?: NativeBuffer; residual?: NativeBuffer;
    preactivation?: NativeBuffer; activation: 'none' | ActivationKindName; dtype: DType; geometry: ConvGeometry }): void;
  /** dx = conv's input gradient from dy (+ bias [inC]): also ConvTranspose2d's forward. */
  conv2dBackwardInput(args: { dx: NativeBuffer; dy: NativeBuffer; weight: NativeBuffer; bias?: NativeBuffer; dtype: DType; geometry: ConvGeometry }): void;
  conv2dBackwardWeight(args: { dw: NativeBuffer; x: NativeBuffer; dy: NativeBuffer; dtype: DType; geometry: ConvGeometry }): void;
  /** out[c] = Σ t[n, c, p] over t [batch, channels, pixels]. */
  channelSum(args: { out: NativeBuffer; t: NativeBuffer; batch: number; channels: number; pixels: number; dtype: DType }): void;
  /** out[b, r, :] = Σ x[b, sources[j], :] over j in [starts[r], starts[r + 1]); x [batch, inRows, dim]. */
  gatherRows(args: { out: NativeBuffer; x: NativeBuffer; starts: Int32Array; sources: Int32Array; dtype: DType; geometry: GatherRowsGeometry }): void;
  /** out[dst(i)] = x[src(i)] · scale over the plan's iteration space; `op` names the caller in errors. */
  layoutCopy(args: LayoutCopyPlan & { op?: string; out: NativeBuffer; x: NativeBuffer; dtype: DType }): void;
  /** gradIn [planes, inH, inW, inner] = the sum of the gradOut [planes, outH, outW, inner] elements that a reflect or replicate pad read from it (inner default 1). */
  layoutPadBackward(args: { op?: string; gradIn: NativeBuffer; gradOut: NativeBuffer; dtype: DType; geometry: LayoutPadGeometry }): void;
  /** out [outer, inner] = alpha · Σ_k x [outer, n, inner], f32 accumulation. */
  /** null when the layout ops take tensors of this rank, else why not (native/layout/layout.h's limit). */
  layoutUnsupported(rank: number): string | null;
  layoutReduce(args: { op?: string; out: NativeBuffer; x: NativeBuffer; dtype: DType; geometry: LayoutReduceGeometry }): void;
}

// Where the addon comes from. Tried in this order, the first that loads wins:
//   1. AM_RADIO_NATIVE, a path to an am_radio.node: when set, the only place tried (an explicit choice must not be
//      shadowed, nor silently replaced by another binary when it fails);
//   2. the package's own build/Release (what `npx am-radio build` or `npm run build:native` writes): a source build
//      is always a deliberate act, so it wins over the prebuilt binary;
//   3. the platform package (@am-radio/linux-x64, ...), an optionalDependency npm installs only on its platform.
// The addon is opened on first use, not at import: `am-radio --help`, `am-radio build` and scripts that only list
// the exports work where no binary loads yet.

/** Platforms with a published binary package. */
export const PUBLISHED_PLATFORMS = ['linux-x64'] as const;

/**
 * The oldest glibc the published linux binaries load on: the newest GLIBC_ symbol version they import (test/package.test.ts
 * holds the build to it, and the README states it). 2.34 is where pthread, dl and rt moved into libc.so.6, so a
 * build on a glibc of 2.34 or newer cannot go below it without an older build image.
 */
export const GLIBC_FLOOR = '2.34';

export interface NativeBinary {
  /** Which of the places above it came from. */
  source: 'AM_RADIO_NATIVE' | 'local build' | 'platform package';
  /** The .node file loaded. */
  file: string;
  /** The platform package's name and version (source 'platform package'). */
  package?: string;
  version?: string;
}

let glibcVersion: string | null | undefined;

/** The running glibc's version ("2.36"), null on musl or off Linux; from Node's diagnostic report (read once). */
export function glibcRuntime(): string | null {
  if (glibcVersion === undefined) {
    let header: { glibcVersionRuntime?: string } | undefined;
    if (process.platform === 'linux' && process.report) {
      // The report's network section can take seconds on some hosts and is not needed here; the setting is restored.
      const report = process.report as typeof process.report & { excludeNetwork?: boolean };
      const excluded = report.excludeNetwork;
      report.excludeNetwork = true;
      try {
        header = (report.getReport() as { header?: { glibcVersionRuntime?: string } }).header;
      } finally {
        report.excludeNetwork = excluded;
      }
    }
    glibcVersion = header?.glibcVersionRuntime ?? null;
  }
  return glibcVersion;
}

function libc(): 'glibc' | 'musl' | null {
  if (process.platform !== 'linux') return null;
  return glibcRuntime() ? 'glibc' : 'musl';
}

/** The binary package npm installs on this machine: @am-radio/<platform>-<arch>, with -musl on musl libc. */
export function platformPackageName(): string {
  return `@am-radio/${process.platform}-${process.arch}${libc() === 'musl' ? '-musl' : ''}`;
}

/** What `npx am-radio build` needs beyond the package: read from package.json, so the message and npm agree. */
export function sourceBuildCommand(): string {
  const peers = packageJson().peerDependencies ?? {};
  const tools = ['cmake-js', 'node-addon-api'].map((n) => (peers[n] ? `${n}@${peers[n]}` : n));
  return `npm install --save-dev ${tools.join(' ')} && npx am-radio build`;
}

function firstLine(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split('\n')[0];
}

function tryLoad(): { addon: NativeAddon; binary: NativeBinary } {
  const tried: string[] = [];
  const open = (file: string) => require(file) as NativeAddon; // eslint-disable-line @typescript-eslint/no-require-imports
  const override = process.env.AM_RADIO_NATIVE;
  if (override) {
    const file = path.resolve(override);
    try {
      return { addon: open(file), binary: { source: 'AM_RADIO_NATIVE', file } };
    } catch (e) {
      tried.push(`AM_RADIO_NATIVE=${override}: ${fs.existsSync(file) ? firstLine(e) : 'no such file'} (when set, it is the only place tried)`);
    }
  } else {
    const local = path.join(packageRoot(), 'build', 'Release', 'am_radio.node');
    if (!fs.existsSync(local)) tried.push(`local build ${local}: not built`);
    else {
      try {
        return { addon: open(local), binary: { source: 'local build', file: local } };
      } catch (e) {
        tried.push(`local build ${local}: ${firstLine(e)}`);
      }
    }
    const name = platformPackageName();
    let manifest: string | undefined;
    try {
      manifest = require.resolve(`${name}/package.json`, { paths: [packageRoot()] });
    } catch {
      tried.push(`platform package ${name}: not installed` + ((PUBLISHED_PLATFORMS as readonly string[]).includes(name.slice('@am-radio/'.length))
        ? ' (npm leaves optional dependencies out with --omit=optional or --no-optional, or when the lock file was made on another platform)'
        : ' (none is published for this platform)'));
    }
    if (manifest) {
      const pkg = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { version: string; main?: string };
      const file = path.join(path.dirname(manifest), pkg.main ?? 'am-radio.node');
      const want = packageJson().version;
      // The binary and the JS must come from the same release: the JS calls the addon's functions by name and shape.
      if (pkg.version !== want) tried.push(`platform package ${name}@${pkg.version} at ${file}: am-radio is ${want}; install ${name}@${want}`);
      else {
        try {
          return { addon: open(file), binary: { source: 'platform package', file, package: name, version: pkg.version } };
        } catch (e) {
          tried.push(`platform package ${name}@${pkg.version} at ${file}: ${firstLine(e)}`);
        }
      }
    }
  }
  const glibc = glibcRuntime();
  throw new Error(
    `am-radio: no native addon loads on ${process.platform}-${process.arch}${glibc ? ` (glibc ${glibc})` : ''}, Node ${process.version}. Tried:\n` +
      tried.map((t, i) => `  ${i + 1}. ${t}\n`).join('') +
      `Prebuilt binaries are published for: ${PUBLISHED_PLATFORMS.join(', ')} (glibc ${GLIBC_FLOOR} or newer).\n` +
      `To build from source (a C++17 compiler, CMake and Ninja or Make; nvcc for the cuda backend):\n  ${sourceBuildCommand()}`,
  );
}

let loaded: { addon: NativeAddon; binary: NativeBinary } | undefined;

function addon(): NativeAddon {
  if (!loaded) {
    loaded = tryLoad();
    const a = loaded.addon;
    // Nothing queued can be observed once 'exit' is emitted (no callback runs after it), so stop the backends then:
    // a worker_thread that calls process.exit with a read pending does not first run every op queued before the
    // read. The addon's cleanup hook does the same later; this only makes it happen before Node waits for reads.
    process.once('exit', () => a.shutdownEnvironment());
  }
  return loaded.addon;
}

/** Which binary was loaded (loading it now if nothing has yet); throws the loader's Error when none loads. */
export function nativeBinary(): NativeBinary {
  addon();
  return { ...loaded!.binary };
}

/** The addon, opened on first use; a property read throws the loader's Error (every place tried) when none loads. */
export const native: NativeAddon = new Proxy({} as NativeAddon, {
  get: (_t, key) => (addon() as unknown as Record<string | symbol, unknown>)[key],
  has: (_t, key) => key in addon(),
  ownKeys: () => Reflect.ownKeys(addon()),
  getOwnPropertyDescriptor: (_t, key) => Reflect.getOwnPropertyDescriptor(addon(), key),
});
