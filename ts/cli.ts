#!/usr/bin/env node
// am-radio command line. `am-radio demo` shows the backends, runs a short tensor + autograd check on each and then
// the embedded tiny RADIO checkpoint on each; `am-radio infer [checkpoint-dir] <image|folder>...` writes each image's
// features and PCA picture (README, "Run on your images"), and without images checks the checkpoint on its own
// io.safetensors or random images (README, "RADIO inference"), the embedded checkpoint by default; `am-radio distill
// config.json` trains a student (README, "Distillation (the trainer)"); `am-radio teach config.json` precomputes a
// teacher's targets as shards.
// `am-radio --help` lists every command (ts/cli/help.ts); help, version, doctor and build live in ts/cli/.
import * as fs from 'fs';
import * as path from 'path';

import { handleCommand } from './cli/commands';
import { demo } from './cli/demo';
import { unknownCommand, usageOf, UsageError } from './cli/help';
import { relativeError } from './cli/parity';
import { embeddedCheckpoint } from './embedded';
import { rand, synchronize, Tensor, tensor } from './index';
import { collectImages, inferImages } from './infer';
import { SafetensorsFile } from './io/safetensors';
import { checkSizeRequest, type ImageSizeRequest } from './model/preprocess';
import { ERadioModel } from './model/eradio/model';
import { AnyRadioModel, loadRadio } from './model/load';
import type { DType, Device } from './native';
import { readDistillConfig } from './train/config';
import { distill } from './train/distill';
import { initDistributed } from './train/distributed';
import { isHfVisionFolder } from './teachers/hf/config';
import { defaultInputSize } from './teachers/hf/teacher';
import { runTeach, runTeachConfig } from './train/teach';



interface InferArgs {
  dir: string;
  images: string[];
  device: Device;
  dtype: DType;
  size?: ImageSizeRequest;
  batch?: number;
  out?: string;
  heads?: string[];
  pcaHead?: string;
}

/**
 * A folder holding config.json or model.safetensors is a checkpoint (one missing the other then fails to load with
 * the file named, rather than as a folder without images); anything else given first is an image or image folder.
 */
const isCheckpointDir = (p: string) =>
  fs.existsSync(p) && fs.statSync(p).isDirectory() && ['config.json', 'model.safetensors'].some((f) => fs.existsSync(path.join(p, f)));

function parseInferArgs(args: string[]): InferArgs {
  const positional: string[] = [];
  const o: Partial<InferArgs> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = () => {
      if (i + 1 >= args.length) throw new Error(`${a} needs a value; ${usageOf('infer')}`);
      return args[++i];
    };
    if (a === '--device') {
      const d = value();
      if (d !== 'cpu' && d !== 'sim' && d !== 'cuda') throw new Error(`--device must be cpu, sim or cuda, got ${JSON.stringify(d)}`);
      o.device = d;
    } else if (a === '--dtype') {
      const d = value();
      if (d !== 'f32' && d !== 'bf16') throw new Error(`--dtype must be f32 or bf16, got ${JSON.stringify(d)}`);
      o.dtype = d;
    } else if (a === '--image-size') {
      const v = value();
      const m = /^(\d+)(?:x(\d+))?$/.exec(v);
      if (!m || Number(m[1]) < 1 || (m[2] !== undefined && Number(m[2]) < 1))
        throw new Error(`--image-size must be N (the shorter side) or HxW with positive integers, e.g. 224 or 224x320, got ${JSON.stringify(v)}`);
      o.size = m[2] === undefined ? Number(m[1]) : [Number(m[1]), Number(m[2])];
    } else if (a === '--batch') {
      o.batch = Number(value());
      if (!Number.isInteger(o.batch) || o.batch < 1) throw new Error('--batch must be a positive integer');
    } else if (a === '--out') o.out = value();
    else if (a === '--heads') o.heads = value().split(',').map((h) => h.trim()).filter((h) => h !== '');
    else if (a === '--pca-head') o.pcaHead = value();
    else if (a.startsWith('--')) throw new Error(`unknown option ${a}; ${usageOf('infer')}`);
    else positional.push(a);
  }
  const dir = positional.length > 0 && isCheckpointDir(positional[0]) ? positional.shift()! : embeddedCheckpoint();
  const images = positional;
  if (images.length > 0 && o.batch !== undefined) throw new Error('--batch applies only without images (each image runs on its own)');
  if (images.length === 0)
    for (const [flag, v] of [['--out', o.out], ['--heads', o.heads], ['--pca-head', o.pcaHead]] as const)
      if (v !== undefined) throw new Error(`${flag} needs images to run on; ${usageOf('infer')}`);
  return { dir, images, device: o.device ?? 'cpu', dtype: o.dtype ?? 'f32', size: o.size, batch: o.batch, out: o.out, heads: o.heads, pcaHead: o.pcaHead };
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/**
 * With image files or folders: writes each one's features and PCA picture (inferFiles). Without: runs the checkpoint
 * on its folder's io.safetensors images when there are any (and --image-size does not ask for another size), else on
 * random images; prints shapes, timings and, when expected outputs exist, errors per head.
 */
async function infer(args: string[]): Promise<void> {
  const parsed = parseInferArgs(args);
  const { dir, device, dtype } = parsed;
  // The inputs are found before the model loads, so a mistyped path fails at once.
  const images = parsed.images.length > 0 ? collectImages(parsed.images) : null;
  let t0 = process.hrtime.bigint();
  const model = await loadRadio(dir, { device, dtype });
  if (images) {
    try {
      await inferFiles(model, images, parsed);
    } finally {
      model.dispose();
    }
    return;
  }
  const size = typeof parsed.size === 'number' ? [parsed.size, parsed.size] : parsed.size;
  const batch = parsed.batch ?? 1;
  const shown = path.relative(process.cwd(), dir).startsWith('..') ? dir : path.relative(process.cwd(), dir) || '.';
  const adaptors = `adaptors=[${model.config.adaptors.map((a) => a.name).join(', ')}]`;
  if (model instanceof ERadioModel) {
    const a = model.config.arch;
    console.log(`loaded ${shown}: ${model.config.timmModel} (E-RADIO) dim=${a.dim} depths=${a.depths.join('/')} window=${model.windowSize} ` +
      `features 1/${model.featureStride} x ${a.neckDim} ${adaptors} on ${device} (${dtype}) in ${ms(t0).toFixed(0)} ms`);
  } else {
    const c = model.config;
    console.log(`loaded ${shown}: ${c.timmModel} D=${c.embedDim} depth=${c.depth} heads=${c.heads} patch=${c.patchSize} ` +
      `prefix=${c.numCls}+${c.numRegisters} ${adaptors} on ${device} (${dtype}) in ${ms(t0).toFixed(0)} ms`);
  }
  const ioPath = path.join(dir, 'io.safetensors');
  const io = fs.existsSync(ioPath) ? await SafetensorsFile.open(ioPath) : null;
  try {
    let images: Tensor;
    let reference = false;
    const stored = io?.has('images') ? io.entry('images').shape : null;
    if (io && stored && (!size || (size[0] === stored[2] && size[1] === stored[3]))) {
      const im = await io.readFloat('images');
      images = tensor(im.data, im.shape, { device });
      reference = true;
      console.log(`images: ${path.join(shown, 'io.safetensors')} [${im.shape.join(', ')}]`);
    } else {
      const side = Math.ceil(224 / model.resolutionStep) * model.resolutionStep;
      const [h, w] = size ?? [side, side];
      images = rand([batch, 3, h, w], { seed: 1, device });
      console.log(`images: random [${images.shape.join(', ')}] in [0, 1)`);
    }
    for (const label of ['first forward (warm-up)', 'second forward']) {
      t0 = process.hrtime.bigint();
      const out = model.forward(images);
      await synchronize(device);
      console.log(`${label}: ${ms(t0).toFixed(1)} ms`);
      if (label === 'first forward (warm-up)') {
        for (const head of Object.values(out)) for (const t of [head.summary, head.features]) t.dispose();
        continue;
      }
      for (const [name, head] of Object.entries(out)) {
        const errs: string[] = [];
        for (const part of ['summary', 'features'] as const) {
          const key = `${name}.${part}`;
          if (reference && io!.has(key)) {
            const expected = tensor((await io!.readFloat(key)).data, head[part].shape);
            errs.push(`${part} rel. error ${(await relativeError(head[part].to('cpu'), expected)).toExponential(2)}`);
          }
        }
        console.log(`  ${name.padEnd(10)} summary [${head.summary.shape.join(', ')}]  features [${head.features.shape.join(', ')}]${errs.length ? `  ${errs.join(', ')}` : ''}`);
      }
    }
  } finally {
    await io?.close();
    model.dispose();
  }
}

/** `infer` on image files: one progress line per image on stdout, then where everything went. */
async function inferFiles(model: AnyRadioModel, images: ReturnType<typeof collectImages>, a: InferArgs): Promise<void> {
  const size = checkSizeRequest(a.size, model.resolutionStep, '--image-size');
  const outDir = a.out ?? '.';
  const t0 = process.hrtime.bigint();
  await inferImages({
    model,
    images,
    outDir,
    size,
    heads: a.heads,
    pcaHead: a.pcaHead,
    metadata: { checkpoint: path.basename(path.resolve(a.dir)), dtype: a.dtype },
    log: (line) => console.log(line),
  });
  console.log(`${images.length} image${images.length === 1 ? '' : 's'} in ${(ms(t0) / 1000).toFixed(1)} s: features (.safetensors) and PCA pictures (.pca.png) in ${outDir}`);
}

async function distillCommand(args: string[]): Promise<void> {
  const files = args.filter((a) => !a.startsWith('--'));
  const flags = args.filter((a) => a.startsWith('--'));
  for (const f of flags) if (f !== '--resume') throw new Error(`unknown option ${f}; ${usageOf('distill')}`);
  if (files.length !== 1) throw new Error(`distill takes one config file; ${usageOf('distill')}`);
  const config = await readDistillConfig(files[0]);
  // Under an MPI launcher (mpirun -np N am-radio distill ...) or torchrun-style (RANK, WORLD_SIZE, MASTER_ADDR,
  // MASTER_PORT) every rank runs this; alone, a group of one. A cuda student's gradients need NCCL's communicator.
  const group = initDistributed({ device: config.options.student.device === 'cuda' ? 'cuda' : 'cpu' });
  // Rank 0 prepares first: it creates the student from student.init, which the others must find complete.
  if (group.rank !== 0) await group.barrier();
  const { teachers, data, close } = await config.prepare({ distributed: group });
  if (group.rank === 0) await group.barrier();
  try {
    const t0 = process.hrtime.bigint();
    const r = await distill({ ...config.options, teachers, data, resume: config.options.resume || flags.includes('--resume'), distributed: group });
    r.student.dispose();
    await group.close();
    if (group.rank !== 0) return;
    const first = r.history[0];
    const last = r.history[r.history.length - 1];
    console.log(`distilled ${r.history.length} steps (to step ${r.step}, ${r.skipped} skipped) in ${(ms(t0) / 1000).toFixed(1)} s` +
      (first && last ? `; loss ${first.loss.toFixed(4)} -> ${last.loss.toFixed(4)}` : ''));
    if (r.checkpoint) console.log(`checkpoint: ${r.checkpoint}`);
    if (config.options.outDir) console.log(`metrics: ${path.join(config.options.outDir, 'metrics.jsonl')}, curves: ${path.join(config.options.outDir, 'loss.svg')}`);
  } finally {
    await close();
  }
}

/**
 * `am-radio teach config.json`, or the same from flags: `--teacher name=DIR --images DIR --out DIR` with optional
 * `--size HxW` (default: an HF teacher's input size; required for a RADIO teacher), `--batch N` (default 8),
 * `--device`, `--dtype` (HF teachers), `--shard-size N`. The teacher's kind comes from DIR/config.json.
 */
async function teachCommand(args: string[]): Promise<void> {
  if (args.length === 1 && !args[0].startsWith('--')) return void (await runTeachConfig(args[0]));
  if (args.length === 0 || !args[0].startsWith('--')) throw new UsageError(`teach takes one config file or flags; ${usageOf('teach')}`);
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i += 2) {
    const [k, v] = [args[i], args[i + 1]];
    if (!['--teacher', '--images', '--out', '--size', '--batch', '--device', '--dtype', '--shard-size'].includes(k)) throw new UsageError(`teach: unknown option ${k}; ${usageOf('teach')}`);
    if (v === undefined || v.startsWith('--')) throw new UsageError(`teach: ${k} needs a value; ${usageOf('teach')}`);
    if (flags.has(k)) throw new UsageError(`teach: ${k} is given twice`);
    flags.set(k, v);
  }
  for (const k of ['--teacher', '--images', '--out']) if (!flags.has(k)) throw new UsageError(`teach: ${k} is required; ${usageOf('teach')}`);
  const m = /^([\w.-]+)=(.+)$/.exec(flags.get('--teacher')!);
  if (!m) throw new UsageError(`teach: --teacher must be name=DIR, got ${JSON.stringify(flags.get('--teacher'))}`);
  const [, name, dir] = m;
  const hf = isHfVisionFolder(dir);
  const int = (k: string, fallback: number) => {
    const v = flags.get(k);
    if (v === undefined) return fallback;
    if (!/^[1-9]\d*$/.test(v)) throw new UsageError(`teach: ${k} must be a positive integer, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  let size: [number, number] | undefined;
  if (flags.has('--size')) {
    const s = /^(\d+)x(\d+)$/.exec(flags.get('--size')!);
    if (!s) throw new UsageError(`teach: --size must be HxW in pixels, got ${JSON.stringify(flags.get('--size'))}`);
    size = [Number(s[1]), Number(s[2])];
  } else if (hf) {
    size = defaultInputSize(dir);
  } else throw new UsageError(`teach: --size HxW is required for a RADIO teacher (${dir})`);
  const dtype = flags.get('--dtype');
  if (dtype !== undefined && !hf) throw new UsageError('teach: --dtype applies to Hugging Face teachers');
  const config = {
    teacher: { type: hf ? 'hf' : 'radio', dir: path.resolve(dir), name, inputSize: size, ...(dtype ? { dtype } : {}) },
    data: { type: 'folder', dir: path.resolve(flags.get('--images')!), partitions: [{ height: size[0], width: size[1], batch: int('--batch', 8) }] },
    output: path.resolve(flags.get('--out')!),
    ...(flags.has('--shard-size') ? { shardSize: int('--shard-size', 1) } : {}),
    ...(flags.has('--device') ? { device: flags.get('--device') } : {}),
  };
  await runTeach(config, process.cwd());
}

async function main(argv: string[]): Promise<void> {
  if (await handleCommand(argv)) return; // help, version, doctor, build; unknown commands and options throw
  const [command = 'demo', ...rest] = argv;
  if (command === 'demo') return demo();
  if (command === 'infer') return infer(rest);
  if (command === 'distill') return distillCommand(rest);
  if (command === 'teach') return teachCommand(rest);
  throw unknownCommand(command); // handleCommand refuses unknown commands first: this is a listed one not run here
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = e instanceof UsageError ? 2 : 1;
});
