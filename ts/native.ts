// The native addon, loaded once (a prebuilt binary or the local build), and the shape of what it exports.
// Nothing outside ts/ talks to it directly.
import * as fs from 'fs';
import * as path from 'path';

export type DType = 'f32' | 'bf16' | 'i32';
export type Device = 'cpu' | 'cuda' | 'sim';

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

/** What the interpolation kernels sample: see native/interpolate/interpolate.h (Geometry). */
export interface InterpolateGeometry {
  layout: 'NCHW' | 'NLC';
  mode: 'bilinear' | 'nearest' | 'gridSample';
  alignCorners: boolean;
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

  fill(out: NativeBuffer, dtype: DType, n: number, value: number): void;
  binary(op: 0 | 1 | 2, out: NativeBuffer, a: NativeBuffer, b: NativeBuffer, dtype: DType, n: number): void;
  scale(out: NativeBuffer, a: NativeBuffer, alpha: number, dtype: DType, n: number): void;
  broadcastScalar(out: NativeBuffer, scalar: NativeBuffer, alpha: number, dtype: DType, n: number): void;
  cast(out: NativeBuffer, outDtype: DType, a: NativeBuffer, aDtype: DType, n: number): void;
  sum(out: NativeBuffer, a: NativeBuffer, dtype: DType, n: number, alpha: number): void;
  randomFill(out: NativeBuffer, dtype: DType, n: number, dist: 0 | 1, seedHi: number, seedLo: number): void;
  /** scale, offset and keep (f32) are given exactly for mode gridSample. */
  interpolate(out: NativeBuffer, x: NativeBuffer, dtype: DType, geometry: InterpolateGeometry,
    scale: NativeBuffer | null, offset: NativeBuffer | null, keep: NativeBuffer | null): void;
  interpolateBackward(gradIn: NativeBuffer, gradOut: NativeBuffer, dtype: DType, geometry: InterpolateGeometry,
    scale: NativeBuffer | null, offset: NativeBuffer | null, keep: NativeBuffer | null): void;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const load = require('node-gyp-build') as (dir: string) => NativeAddon;

// The package root: the nearest folder above this file with a package.json (dist/, dist-bench/ts/ or ts/).
function packageRoot(): string {
  let dir = path.join(__dirname, '..');
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`am-radio: no package.json above ${__dirname}`);
    dir = parent;
  }
  return dir;
}

export const native: NativeAddon = load(packageRoot());
