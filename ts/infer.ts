// Running a RADIO model over image files: what `am-radio infer <images...>` does, as a function apps can call too.
// Per image: decode and resize (RadioModel.preprocess's rule), forward, then <out>/<name>.safetensors with every
// chosen head's summary and features, and <out>/<name>.pca.png, the input beside the PCA picture of the features.
import * as fs from 'fs';
import * as path from 'path';

import { synchronize } from './backends';
import { IMAGE_EXTENSIONS, scanFolder } from './data/scan';
import { writeSafetensors, type SafetensorsWriteInput } from './io/safetensors';
import { preprocessImage, checkSizeRequest, type ImageSizeRequest } from './model/preprocess';
import type { AnyRadioModel } from './model/load';
import { tensor } from './tensor';
import { pcaColors } from './viz/pca';
import { sideBySide, writeRgbPng } from './viz/picture';

export interface InferInput {
  /** The image file. */
  source: string;
  /** Its outputs' path under the output folder, without extension: the file's base name, or for an image found in a
   * folder its path relative to that folder (so sub/a.jpg → sub/a). */
  name: string;
}

/**
 * Image files and folders (scanned recursively for .jpg, .jpeg, .png, .webp) → the images to run, in the order
 * given (a folder's in sorted order). A named file is used whatever its extension (sharp reads the content). A
 * missing path, a folder without images and two inputs that would write the same output are Errors naming them.
 */
export function collectImages(inputs: readonly string[]): InferInput[] {
  if (!Array.isArray(inputs) || inputs.length === 0) throw new Error('collectImages: give at least one image file or folder');
  const out: InferInput[] = [];
  for (const input of inputs) {
    if (typeof input !== 'string' || input === '') throw new Error(`collectImages: ${JSON.stringify(input)} is not a path`);
    let st: fs.Stats;
    try {
      st = fs.statSync(input);
    } catch {
      throw new Error(`no such image file or folder: ${input}`);
    }
    if (st.isDirectory()) {
      const list = scanFolder(input, input);
      // Named as given (the folder joined with the relative path), so progress and metadata read as the command line did.
      for (const id of list.ids) out.push({ source: path.join(input, id), name: withoutExtension(id) });
    } else if (st.isFile()) out.push({ source: input, name: withoutExtension(path.basename(input)) });
    else throw new Error(`${input} is neither a file nor a folder`);
  }
  const byName = new Map<string, string>();
  for (const { source, name } of out) {
    const prev = byName.get(name);
    if (prev !== undefined) throw new Error(`${prev} and ${source} would both write ${name}.safetensors; run them into different --out folders`);
    byName.set(name, source);
  }
  return out;
}

function withoutExtension(name: string): string {
  const ext = path.extname(name);
  return ext && IMAGE_EXTENSIONS.includes(ext.toLowerCase()) ? name.slice(0, -ext.length) : name;
}

export interface InferImagesOptions {
  model: AnyRadioModel;
  images: readonly InferInput[];
  /** Created when missing. */
  outDir: string;
  /** The resolution (see ImageSizeRequest); default each image's own, rounded to a supported one. */
  size?: ImageSizeRequest;
  /** Heads whose summary and features are written: 'backbone' and adaptor names; default all of them. */
  heads?: readonly string[];
  /** The head whose features the PCA picture shows; default 'backbone'. */
  pcaHead?: string;
  /** Extra string metadata for every safetensors file (e.g. the checkpoint). */
  metadata?: Readonly<Record<string, string>>;
  /** Called with one progress line per image; default none. */
  log?: (line: string) => void;
}

export interface InferredImage {
  source: string;
  /** The resolution the model ran at, and the image's own. */
  height: number;
  width: number;
  sourceHeight: number;
  sourceWidth: number;
  /** The files written. */
  features: string;
  picture: string;
  /** Decode, forward, PCA and writing, in milliseconds. */
  ms: number;
}

/** The heads a model outputs, backbone first. */
export function headNames(model: AnyRadioModel): string[] {
  return ['backbone', ...model.config.adaptors.map((a) => a.name)];
}

function checkHeads(model: AnyRadioModel, heads: readonly string[], what: string): void {
  const known = headNames(model);
  for (const h of heads) if (!known.includes(h)) throw new Error(`${what}: this checkpoint has no head ${JSON.stringify(h)} (it has ${known.join(', ')})`);
}

/**
 * Runs `model` (eval mode) on each image in turn and writes its outputs; every option is checked before the first
 * image, and the first image that cannot be read stops the run with an Error naming it.
 *
 * <out>/<name>.safetensors holds `<head>.summary` [1, C] and `<head>.features` [1, N, C] (N = gh·gw tokens in raster
 * order) in the model's dtype, with metadata source, height, width, source_height, source_width, grid_height,
 * grid_width. <out>/<name>.pca.png is 2W × H: the input as the model saw it, beside the first three principal
 * components of `pcaHead`'s features as RGB (robustly scaled, as RADIO's examples do), bilinearly upsampled.
 */
export async function inferImages(opts: InferImagesOptions): Promise<InferredImage[]> {
  const op = 'inferImages';
  const { model, images, outDir } = opts;
  if (model.training) throw new Error(`${op}: the model is in training mode; call eval() first`);
  const heads = opts.heads ?? headNames(model);
  if (heads.length === 0) throw new Error(`${op}: heads is empty`);
  checkHeads(model, heads, `${op}: heads`);
  const pcaHead = opts.pcaHead ?? 'backbone';
  checkHeads(model, [pcaHead], `${op}: pcaHead`);
  const rule = model.resolutionRule;
  const size = checkSizeRequest(opts.size, rule.step, `${op}: size`);
  const results: InferredImage[] = [];
  for (const [i, img] of images.entries()) {
    const t0 = process.hrtime.bigint();
    const pre = await preprocessImage(op, img.source, rule, size);
    const features = path.join(outDir, `${img.name}.safetensors`);
    const picture = path.join(outDir, `${img.name}.pca.png`);
    await fs.promises.mkdir(path.dirname(features), { recursive: true }).catch((e: Error) => {
      throw new Error(`cannot create the output folder ${path.dirname(features)} (${e.message})`);
    });
    const input = tensor(pre.pixels, [1, 3, pre.height, pre.width], { device: model.device });
    const out = model.forward(input);
    input.dispose();
    try {
      const [gh, gw] = model.featureGrid('backbone', pre.height, pre.width);
      const entries: Record<string, SafetensorsWriteInput> = {};
      for (const h of heads) {
        entries[`${h}.summary`] = out[h].summary;
        entries[`${h}.features`] = out[h].features;
      }
      const meta = {
        ...opts.metadata,
        source: img.source,
        height: String(pre.height),
        width: String(pre.width),
        source_height: String(pre.sourceHeight),
        source_width: String(pre.sourceWidth),
        grid_height: String(gh),
        grid_width: String(gw),
      };
      await writeSafetensors(features, entries, meta);
      const f = out[pcaHead].features;
      const { colors } = pcaColors(await f.toArray(), gh, gw, f.shape[2]);
      await writeRgbPng(picture, sideBySide(pre.pixels, pre.height, pre.width, colors, gh, gw), pre.height, 2 * pre.width);
    } finally {
      for (const head of Object.values(out)) for (const t of [head.summary, head.features]) t.dispose();
    }
    await synchronize(model.device);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    opts.log?.(`[${i + 1}/${images.length}] ${img.source} ${pre.sourceHeight}x${pre.sourceWidth} -> ${pre.height}x${pre.width}: ${features}, ${picture} (${ms.toFixed(0)} ms)`);
    results.push({ source: img.source, height: pre.height, width: pre.width, sourceHeight: pre.sourceHeight, sourceWidth: pre.sourceWidth, features, picture, ms });
  }
  return results;
}
