// From an image file (or its bytes) to what RadioModel.forward takes: decoded with sharp, resized to a resolution
// the model supports, as [1, 3, H, W] RGB in [0, 1]. The rounding rule is RADIO's get_nearest_supported_resolution
// (radio_model.py): each side to the nearest multiple of min_resolution_step (patch size × ViTDet window, or the
// patch size), at least one step. Both sides are scaled by one factor first, so the aspect ratio is kept up to that
// rounding, as RADIO's examples do (their ResizeTransform).
import { decodeSource, imageSize, type ImageSource } from '../data/decode';

/**
 * The resolution to run an image at:
 * - omitted: the image's own size, scaled down (never up) so its longer side is at most `maxSide`, then rounded;
 * - a number N: the shorter side scaled to N, aspect kept (the shortest-side mode of RADIO's examples), then rounded;
 * - [H, W]: exactly that, stretched when the aspect differs; both must be multiples of the step (else an Error naming
 *   the nearest supported size).
 */
export type ImageSizeRequest = number | readonly [number, number];

export interface ResolutionRule {
  /** H and W must be multiples of this (RadioModel.resolutionStep). */
  step: number;
  /** The longest side an image is run at when no size is asked for (RadioModel: its position table's size). */
  maxSide: number;
}

export interface PreprocessedImage {
  /** [1, 3, height, width] planar RGB in [0, 1]. */
  pixels: Float32Array;
  height: number;
  width: number;
  /** The decoded image's own (EXIF-oriented) size. */
  sourceHeight: number;
  sourceWidth: number;
}

const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;

// Python's round() (halves to the even neighbour), which RADIO's rounding uses: 24 px at step 16 gives 32, 40 gives 32.
function pyRound(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** RADIO's get_nearest_supported_resolution: each side rounded to the nearest multiple of `step`, at least `step`. */
export function nearestSupportedResolution(height: number, width: number, step: number): [number, number] {
  if (!isPosInt(step)) throw new Error(`nearestSupportedResolution: step must be a positive integer, got ${JSON.stringify(step)}`);
  for (const [name, v] of [['height', height], ['width', width]] as const)
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new Error(`nearestSupportedResolution: ${name} must be a positive number, got ${JSON.stringify(v)}`);
  const near = (v: number) => Math.max(step, pyRound(v / step) * step);
  return [near(height), near(width)];
}

/** Checks a size request before any image is read; `what` names it in the Error (e.g. '--image-size'). */
export function checkSizeRequest(size: unknown, step: number, what: string): ImageSizeRequest | undefined {
  if (size === undefined) return undefined;
  if (typeof size === 'number') {
    if (!isPosInt(size)) throw new Error(`${what} must be a positive integer (the shorter side) or [H, W], got ${JSON.stringify(size)}`);
    return size;
  }
  if (!Array.isArray(size) || size.length !== 2 || !size.every(isPosInt))
    throw new Error(`${what} must be a positive integer (the shorter side) or [H, W] of positive integers, got ${JSON.stringify(size)}`);
  const [h, w] = size as [number, number];
  if (h % step !== 0 || w % step !== 0) {
    const [nh, nw] = nearestSupportedResolution(h, w, step);
    throw new Error(`${what} ${h}x${w} is not supported by this model: H and W must be multiples of ${step}; nearest supported: ${nh}x${nw}`);
  }
  return [h, w];
}

/** The [H, W] an image of sourceHeight × sourceWidth pixels is run at (see ImageSizeRequest). */
export function targetResolution(sourceHeight: number, sourceWidth: number, rule: ResolutionRule, size?: ImageSizeRequest): [number, number] {
  const checked = checkSizeRequest(size, rule.step, 'size');
  if (Array.isArray(checked)) return [checked[0], checked[1]];
  const scale = typeof checked === 'number'
    ? checked / Math.min(sourceHeight, sourceWidth)
    : Math.min(1, rule.maxSide / Math.max(sourceHeight, sourceWidth));
  return nearestSupportedResolution(sourceHeight * scale, sourceWidth * scale, rule.step);
}

/**
 * Decodes `source` (a JPEG, PNG or WebP file path or its bytes; EXIF orientation applied, alpha dropped, grey and
 * CMYK to sRGB, as the training data is) and resizes it (sharp's Lanczos-3) to targetResolution's size. A missing
 * file, an undecodable one and an unsupported size are Errors prefixed by `op` that name the file.
 */
export async function preprocessImage(op: string, source: ImageSource, rule: ResolutionRule, size?: ImageSizeRequest): Promise<PreprocessedImage> {
  const checked = checkSizeRequest(size, rule.step, `${op}: size`);
  const { height: sourceHeight, width: sourceWidth } = await imageSize(op, source);
  const [height, width] = targetResolution(sourceHeight, sourceWidth, rule, checked);
  const { images } = await decodeSource(op, source, height, width, 'stretch');
  return { pixels: images, height, width, sourceHeight, sourceWidth };
}
