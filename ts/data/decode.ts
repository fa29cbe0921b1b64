// Image decoding and the random-resized-crop geometry, shared by the decode workers and the main thread.
//
// The shared code is kept as JavaScript source text: a worker started with `eval` needs plain JS, and this package
// runs both from compiled dist/ and from TypeScript under a transpiler, so there is no one worker file path that
// works in both. Keeping the text (rather than `fn.toString()` of a TS function) also survives coverage
// instrumentation, which would inject counters the worker cannot see. The main thread compiles the same text, so
// `cropBox` and `loadImage` run exactly the code the workers run.
import { existsSync, statSync } from 'node:fs';
import type sharpFn from 'sharp';

export type ResizeMode = 'stretch' | 'cover' | 'contain';

/** A crop rectangle in the (EXIF-oriented) source image's pixels. */
export interface CropBox {
  left: number;
  top: number;
  width: number;
  height: number;
  /** True when all 10 attempts were rejected and the centre crop was taken. */
  fallback: boolean;
}

/** Uniform draws one random-resized crop consumes: 10 attempts × (area, log-aspect), then (top, left). */
export const CROP_UNIFORMS = 22;

/** What a worker (or `loadImage`) is asked to produce for one image. */
export interface DecodeTask {
  /** A file path, or (main thread only: tasks sent to workers are paths) the encoded file's bytes. */
  path: string | Uint8Array;
  height: number;
  width: number;
  /** Random-resized-crop parameters, or null for a plain resize by `resize`. */
  crop: { u: ArrayLike<number>; scale: readonly [number, number]; ratio: readonly [number, number] } | null;
  resize: ResizeMode;
  flip: boolean;
}

export interface DecodeResult {
  /** [3, height, width] planar RGB in [0, 1]. */
  pixels: Float32Array;
  box: CropBox | null;
  sourceWidth: number;
  sourceHeight: number;
}

export const DECODE_SOURCE = String.raw`
// Python's round(): torchvision's RandomResizedCrop uses int(round(x)), which rounds halves to even.
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// torchvision RandomResizedCrop.get_params, with its random draws passed in as uniforms u[0..21].
function cropBox(width, height, u, scale, ratio) {
  const area = width * height;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let k = 0; k < 10; k++) {
    const target = area * (scale[0] + (scale[1] - scale[0]) * u[2 * k]);
    const aspect = Math.exp(logLo + (logHi - logLo) * u[2 * k + 1]);
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = Math.floor(u[20] * (height - h + 1));
      const left = Math.floor(u[21] * (width - w + 1));
      return { left, top, width: w, height: h, fallback: false };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = roundHalfEven(width / ratio[0]);
  else if (inRatio > ratio[1]) w = roundHalfEven(height * ratio[1]);
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h, fallback: true };
}

async function decodeImage(sharp, t) {
  // failOn stays at sharp's default ('warning'): a damaged file is reported rather than trained on half-grey.
  let img = sharp(t.path).autoOrient();
  const meta = await img.metadata();
  const sw = meta.autoOrient ? meta.autoOrient.width : meta.width;
  const sh = meta.autoOrient ? meta.autoOrient.height : meta.height;
  let box = null;
  if (t.crop) {
    box = cropBox(sw, sh, t.crop.u, t.crop.scale, t.crop.ratio);
    img = img.extract({ left: box.left, top: box.top, width: box.width, height: box.height });
    img = img.resize(t.width, t.height, { fit: 'fill' });
  } else if (t.resize === 'contain') {
    img = img.resize(t.width, t.height, { fit: 'contain', background: { r: 0, g: 0, b: 0, alpha: 1 } });
  } else {
    img = img.resize(t.width, t.height, { fit: t.resize === 'cover' ? 'cover' : 'fill' });
  }
  // Alpha is dropped, not composited, as PIL's convert('RGB') does; grey and CMYK become sRGB.
  const { data, info } = await img.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== t.width || info.height !== t.height) {
    throw new Error('decoded to ' + info.width + 'x' + info.height + 'x' + info.channels + ', expected ' + t.width + 'x' + t.height + 'x3');
  }
  // The flip is done here, while interleaved bytes become planar floats, so it costs nothing and is an exact mirror.
  const W = t.width;
  const n = t.height * W;
  const out = new Float32Array(3 * n);
  for (let y = 0; y < t.height; y++) {
    const row = y * W;
    for (let x = 0; x < W; x++) {
      const s = (row + x) * 3;
      const o = row + (t.flip ? W - 1 - x : x);
      out[o] = data[s] / 255;
      out[n + o] = data[s + 1] / 255;
      out[2 * n + o] = data[s + 2] / 255;
    }
  }
  return { pixels: out, box, sourceWidth: sw, sourceHeight: sh };
}
`;

type SharpFn = typeof sharpFn;

const shared = new Function(`${DECODE_SOURCE}\nreturn { cropBox, decodeImage };`)() as {
  cropBox(width: number, height: number, u: ArrayLike<number>, scale: readonly [number, number], ratio: readonly [number, number]): CropBox;
  decodeImage(sharp: SharpFn, task: DecodeTask): Promise<DecodeResult>;
};

/**
 * The crop torchvision's RandomResizedCrop would take from a `width`×`height` image, given its random draws as
 * `CROP_UNIFORMS` uniforms in [0, 1). Exported so the geometry can be checked without decoding anything.
 */
export function cropBox(
  width: number,
  height: number,
  u: ArrayLike<number>,
  scale: readonly [number, number],
  ratio: readonly [number, number],
): CropBox {
  return shared.cropBox(width, height, u, scale, ratio);
}

let sharpModule: SharpFn | undefined;
/** sharp is loaded on first use, so importing am-radio works (and stays fast) where sharp's binary is missing. */
export function loadSharp(): SharpFn {
  sharpModule ??= require('sharp') as SharpFn;
  return sharpModule;
}

export function decodeImage(task: DecodeTask): Promise<DecodeResult> {
  return shared.decodeImage(loadSharp(), task);
}

const RESIZE_MODES: readonly ResizeMode[] = ['stretch', 'cover', 'contain'];

export function checkResizeMode(v: unknown, field: string): ResizeMode {
  if (!RESIZE_MODES.includes(v as ResizeMode)) {
    throw new Error(`${field} must be one of ${RESIZE_MODES.map((m) => `'${m}'`).join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as ResizeMode;
}

export function checkSize(v: unknown, field: string): number {
  if (!Number.isInteger(v) || (v as number) < 1) throw new Error(`${field} must be a positive integer, got ${JSON.stringify(v)}`);
  return v as number;
}

export interface LoadImageOptions {
  /** Output size; both or neither (neither keeps the image's own, EXIF-oriented, size). */
  height?: number;
  width?: number;
  /** How the image is fitted to height×width: 'stretch' (default) ignores aspect, 'cover' centre-crops, 'contain' pads with black. */
  resize?: ResizeMode;
}

export interface LoadedImage {
  /** [1, 3, height, width] RGB in [0, 1], row-major: a batch of one, as `RadioModel.forward` takes. */
  images: Float32Array;
  height: number;
  width: number;
}

/** A file path, or an encoded JPEG, PNG or WebP file in memory. */
export type ImageSource = string | Uint8Array;

/** How an Error names an image source: its path, or the buffer's size. */
export function describeSource(source: ImageSource): string {
  return typeof source === 'string' ? source : `the ${source.length}-byte image buffer`;
}

function checkSource(op: string, source: unknown): ImageSource {
  if (typeof source === 'string') {
    if (source === '') throw new Error(`${op}: the image path is an empty string`);
    if (!existsSync(source) || !statSync(source).isFile()) throw new Error(`${op}: no such image file: ${source}`);
    return source;
  }
  if (source instanceof Uint8Array) {
    if (source.length === 0) throw new Error(`${op}: the image buffer is empty`);
    return source;
  }
  throw new Error(`${op}: the image must be a file path or a Buffer, got ${source === null ? 'null' : typeof source}`);
}

/** Decodes one JPEG, PNG or WebP file (on libuv's thread pool, via sharp) to planar RGB floats in [0, 1]. */
export async function loadImage(path: ImageSource, options: LoadImageOptions = {}): Promise<LoadedImage> {
  if (typeof options !== 'object' || options === null) throw new Error('loadImage: options must be an object');
  for (const k of Object.keys(options)) {
    if (!['height', 'width', 'resize'].includes(k)) throw new Error(`loadImage: unknown option '${k}'`);
  }
  const resize = checkResizeMode(options.resize ?? 'stretch', 'loadImage: resize');
  if ((options.height === undefined) !== (options.width === undefined)) {
    throw new Error('loadImage: give both height and width, or neither');
  }
  const source = checkSource('loadImage', path);
  let { height, width } = options;
  if (height === undefined || width === undefined) ({ height, width } = await sizeOf('loadImage', source));
  checkSize(height, 'loadImage: height');
  checkSize(width, 'loadImage: width');
  return decodeSource('loadImage', source, height, width, resize);
}

/**
 * What `loadImage` does, with Errors prefixed by `op` and no option parsing: for callers that checked their
 * arguments and first asked `imageSize` for the size to choose a resize.
 */
export async function decodeSource(op: string, source: ImageSource, height: number, width: number, resize: ResizeMode): Promise<LoadedImage> {
  try {
    const r = await decodeImage({ path: source, height, width, crop: null, resize, flip: false });
    return { images: r.pixels, height, width };
  } catch (e) {
    throw new Error(`${op}: cannot decode ${describeSource(source)}: ${(e as Error).message}`);
  }
}

/** The (EXIF-oriented) size of an image file or buffer, read from its header; a missing or undecodable one is an Error prefixed by `op`. */
export async function imageSize(op: string, source: unknown): Promise<{ height: number; width: number }> {
  return sizeOf(op, checkSource(op, source));
}

async function sizeOf(op: string, source: ImageSource): Promise<{ height: number; width: number }> {
  try {
    const meta = await loadSharp()(source).autoOrient().metadata();
    return meta.autoOrient ?? { height: meta.height, width: meta.width };
  } catch (e) {
    throw new Error(`${op}: cannot decode ${describeSource(source)}: ${(e as Error).message}`);
  }
}
