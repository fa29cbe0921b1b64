// One RADIO distillation training step end to end: the training forward (CPE crop and position dropout replayed),
// the multi-teacher loss against three teachers' feature targets, backward, and an AdamW step, on the random-weight
// ViT-B/16 RADIO v2.5-b checkpoint bench/radio.ts times (three MLP v2 adaptor heads: clip 1024, dino_v2 768 and
// sam 1280 wide), at 224 px, batch 8 on cpu and 64 on cuda. The teachers' grids are smaller than (clip 12²), equal
// to (dino_v2 14²) and larger than (sam 28²) the student's 14², as in test/fixtures/radio/train-b16-v2heads; SAM
// has no summary target. sim, an emulator, runs the small model of bench/radio.ts at batch 2 (not by default).
//   npm run bench -- train          AM_RADIO_BENCH_DEVICES=cpu AM_RADIO_BENCH_DTYPES=f32 npm run bench -- train
// The same step runs in PyTorch (bench/torch_train.py: eager, and torch.compile on cuda) on the same checkpoint,
// images, crop, targets and hyper-parameters, in the same process run, when the Python interpreter has torch; our
// speed over theirs goes into the record (vsTorch). Both start from identical weights, so the losses of the first
// two steps must agree (the first checks forward and loss, the second backward and the AdamW update too): their
// relative error is printed and recorded, and a disagreement is printed as a warning, since a faster step that
// computes something else would mean nothing.
// Options (environment):
//   AM_RADIO_BENCH_TRAIN_STEPS      timed steps after the two check steps (default cpu 3, cuda 20, sim 2)
//   AM_RADIO_BENCH_TRAIN_BREAKDOWN  repeats of each per-phase pass (default cpu 1, cuda 5, sim 1; 0: none)
//   AM_RADIO_BENCH_TRAIN_BATCH      batch size (default cpu 8, cuda 64, sim 2)
//   AM_RADIO_BENCH_TORCH=0          no PyTorch
//   AM_RADIO_BENCH_TRAIN_COMPILE    the dtypes torch.compile runs for on cuda (default all; 0: none), e.g. bf16
//   AM_RADIO_BENCH_PYTHON           the interpreter with torch (default /usr/bin/python3, where Debian's is)
//   AM_RADIO_PROFILE=1              print one step's per-op profile
// GFLOP/s counts 3× the forward's FLOPs (bench/radio-models.ts, forwardFlops): backward is about twice a forward.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { AdamW, formatProfile, ops, profile, rand, randn, RadioModel, synchronize, tensor, tidy, writeSafetensors } from '../ts';
import type { CpeCrop, Device, DType, RadioOutput, SafetensorsWriteEntry, Tensor } from '../ts';
import type { TeacherTerm } from '../ts/ops';
import { BenchRecord, benchDevices, benchDtypes, printTable, timeCase, writeResults } from './harness';
import { forwardFlops, ModelSpec, seconds, SIM_MODEL, TEACHERS, VIT_B, writeRandomCheckpoint } from './radio-models';

type Teacher = (typeof TEACHERS)[number];

const PX = 224;
const TEACHER_GRIDS: Record<Teacher, [number, number]> = { clip: [12, 12], dino_v2: [14, 14], sam: [28, 28] };
// The paper's naive balancing (spec §4.1): λ = γ = 1, no summary term for SAM.
const WEIGHTS: Record<Teacher, { summary: number; features: number }> = {
  clip: { summary: 1, features: 1 },
  dino_v2: { summary: 1, features: 1 },
  sam: { summary: 0, features: 1 },
};
const LOSS = { mode: 'cosine+smoothl1' as const, alpha: 0.9, beta: 0.1, delta: 1 };
// The paper's AdamW (spec §4.4): base LR 1e-3, weight decay 0.02.
const OPTIM = { lr: 1e-3, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0.02 };
const CHECK_STEPS = 2;
// Relative loss disagreement above which the comparison is called off: f32 agrees to ~1e-6, bf16 (ours: bf16
// weights and activations; PyTorch: autocast over f32 weights) to ~1e-2.
const LOSS_TOLERANCE: Record<DType, number> = { f32: 1e-4, bf16: 5e-2, i32: 0 };

const DEFAULTS: Record<Device, { steps: number; breakdown: number; batch: number }> = {
  cpu: { steps: 3, breakdown: 1, batch: 8 },
  cuda: { steps: 20, breakdown: 5, batch: 64 },
  sim: { steps: 2, breakdown: 1, batch: 2 },
};

function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be an integer >= 0, got ${JSON.stringify(v)}`);
  return n;
}

/** Host copies of one case's inputs: what io.safetensors holds for PyTorch, and what ours uploads. */
interface CaseData {
  batch: number;
  entries: Record<string, { shape: number[]; data: Float32Array }>;
}

async function hostData(t: Tensor): Promise<{ shape: number[]; data: Float32Array }> {
  const data = await t.toArray();
  const shape = [...t.shape];
  t.dispose();
  return { shape, data };
}

/** Random images in [0, 1], one training crop drawn by the model's generator, and random teacher targets. */
async function makeCase(model: RadioModel, m: ModelSpec, batch: number): Promise<CaseData> {
  const entries: CaseData['entries'] = {};
  entries.images = await hostData(rand([batch, 3, PX, PX], { seed: 7 }));
  model.seed(11);
  const crop = model.sampleCpe(batch, PX, PX);
  for (const k of ['scale', 'offset', 'keep'] as const) entries[`cpe.${k}`] = await hostData(crop[k]!);
  let seed = 20;
  for (const t of TEACHERS) {
    const C = m.adaptors[t][1];
    const [h, w] = TEACHER_GRIDS[t];
    if (WEIGHTS[t].summary > 0) entries[`teacher.${t}.summary`] = await hostData(randn([batch, C], { seed: seed++ }));
    entries[`teacher.${t}.features`] = await hostData(randn([batch, h * w, C], { seed: seed++ }));
  }
  return { batch, entries };
}

/** io.safetensors and train.json for bench/torch_train.py. */
async function writeCase(dir: string, c: CaseData, steps: number, breakdown: number): Promise<void> {
  await fs.promises.mkdir(dir, { recursive: true });
  const st: Record<string, SafetensorsWriteEntry> = {};
  for (const [k, e] of Object.entries(c.entries)) st[k] = { dtype: 'F32', shape: e.shape, data: e.data };
  await writeSafetensors(path.join(dir, 'io.safetensors'), st);
  const spec = {
    student_grid: [PX / 16, PX / 16],
    teacher_grids: TEACHER_GRIDS,
    weights: WEIGHTS,
    loss: LOSS,
    optim: OPTIM,
    checkSteps: CHECK_STEPS,
    steps,
    breakdownSteps: breakdown,
  };
  await fs.promises.writeFile(path.join(dir, 'train.json'), JSON.stringify(spec, null, 1));
}

interface TorchResult {
  torch: string;
  device: string;
  threads: number;
  dtype: string;
  compiled: boolean;
  attention: string;
  adamw: string;
  losses: number[];
  warmupMs: number[];
  medianMs: number;
  minMs: number;
  repeats: number;
  phasesMs?: Record<string, number>;
  /** 1-minute load average after its timed steps (filled in here). */
  loadAvg?: number;
}

/** bench/torch_train.py on the same case, or null (with the reason printed) when it cannot run. */
function runTorch(checkpoint: string, caseDir: string, device: Device, dtype: DType, compile: boolean): TorchResult | null {
  const python = process.env.AM_RADIO_BENCH_PYTHON || '/usr/bin/python3';
  const script = path.join(__dirname, '..', '..', 'bench', 'torch_train.py');
  // Our cpu backend runs one thread per hardware thread.
  const args = [script, checkpoint, caseDir, '--device', device, '--dtype', dtype, '--threads', String(os.cpus().length), ...(compile ? ['--compile'] : [])];
  const label = `torch-${device} ${compile ? 'compile' : 'eager'} ${dtype}`;
  const t0 = performance.now();
  console.log(`train: ${label}...`);
  const r = spawnSync(python, args, { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').pop();
    console.log(`train: ${label} not measured (${why})`);
    return null;
  }
  const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as TorchResult;
  // The script ends right after its breakdown pass; close enough to its timed steps on a cpu that stays loaded.
  res.loadAvg = os.loadavg()[0];
  console.log(`train: ${label} done in ${seconds(t0)} (torch ${res.torch}, ${res.threads} threads, attention ${res.attention}, AdamW ${res.adamw})`);
  return res;
}

const relErr = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);

async function benchCase(device: Device, dtype: DType, m: ModelSpec, checkpoint: string, tmp: string): Promise<BenchRecord[]> {
  const d = DEFAULTS[device];
  const steps = Math.max(1, envInt('AM_RADIO_BENCH_TRAIN_STEPS', d.steps));
  const breakdown = envInt('AM_RADIO_BENCH_TRAIN_BREAKDOWN', d.breakdown);
  const batch = Math.max(1, envInt('AM_RADIO_BENCH_TRAIN_BATCH', d.batch));
  const label = `${m.name} ${PX}px`;
  let t0 = performance.now();
  const model = (await RadioModel.load(checkpoint, { device, dtype })).train();
  const data = await makeCase(model, m, batch);
  const caseDir = path.join(tmp, `case-${device}-B${batch}`);
  await writeCase(caseDir, data, steps, breakdown);
  console.log(`train: ${label} ${dtype} B${batch} loaded on ${device}, case written, in ${seconds(t0)}`);

  const up = (k: string, dt: DType = 'f32') => tensor(data.entries[k].data, data.entries[k].shape, { device, dtype: dt });
  const images = up('images');
  const crop: CpeCrop = { scale: up('cpe.scale'), offset: up('cpe.offset'), keep: up('cpe.keep') };
  // Targets in the model's dtype: the loss op takes student and teacher in one dtype.
  const targets = Object.fromEntries(
    TEACHERS.map((t) => [t, { summary: WEIGHTS[t].summary > 0 ? up(`teacher.${t}.summary`, dtype) : undefined, features: up(`teacher.${t}.features`, dtype) }]),
  ) as Record<Teacher, { summary?: Tensor; features: Tensor }>;
  const grid: [number, number] = [PX / 16, PX / 16];
  const lossOf = (out: RadioOutput): Tensor =>
    ops.multiTeacherLoss(
      TEACHERS.map((t): TeacherTerm => ({
        student: { summary: targets[t].summary && out[t].summary, features: out[t].features, grid },
        teacher: { summary: targets[t].summary, features: targets[t].features, grid: TEACHER_GRIDS[t] },
        summaryWeight: WEIGHTS[t].summary,
        featureWeight: WEIGHTS[t].features,
      })),
      LOSS,
    ).total;
  const opt = new AdamW(model.trainableParameters(), OPTIM);
  // The step as a training loop writes it: every activation of the step is freed when the scope closes.
  const step = (): Tensor => {
    const loss = tidy(() => {
      const total = lossOf(model.forward(images, { cpe: crop }));
      total.backward();
      return total.detach();
    });
    opt.step();
    opt.zeroGrad();
    return loss;
  };

  const losses: number[] = [];
  const warmupMs: number[] = [];
  for (let i = 0; i < CHECK_STEPS; i++) {
    t0 = performance.now();
    const l = step();
    losses.push(await l.item());
    l.dispose();
    warmupMs.push(performance.now() - t0);
  }
  console.log(`train: ${label} ${dtype} on ${device}: check steps ${warmupMs.map((v) => `${(v / 1000).toFixed(1)} s`).join(', ')}; timing ${steps} steps...`);
  if (process.env.AM_RADIO_PROFILE === '1') {
    const { profile: p } = await profile(() => step().dispose(), { device });
    console.log(`train: ${label} ${dtype}, one step\n${formatProfile(p)}`);
  }
  const flops = 3 * forwardFlops(model.config, batch, PX);
  const base = { op: `radio train step ${label}`, shape: `B${batch} 3x${PX}x${PX}`, dtype, flops };
  const rec = await timeCase({ ...base, backend: device }, device, () => step().dispose(), { warmup: 0, minRepeats: steps, minTimeMs: 0 });
  // Ours and PyTorch run one after the other: on a machine shared with other work, the load each saw (1-minute
  // load average after its timed steps) says how comparable their times are.
  const loadAvg = os.loadavg()[0];
  rec.imgPerS = batch / (rec.medianMs / 1000);

  // Per phase, from passes that stop after each phase (forward; + loss; + backward), synchronized only at their
  // ends: a step's scope cannot stay open across the awaits a synchronization between phases would need. Each
  // phase is the difference of consecutive medians (the last against the full step above), so on a loaded
  // machine one can come out noisy.
  let phasesMs: Record<string, number> | undefined;
  if (breakdown > 0) {
    const passes: Array<() => void> = [
      () => tidy(() => void model.forward(images, { cpe: crop })),
      () => tidy(() => void lossOf(model.forward(images, { cpe: crop }))),
      () => {
        tidy(() => lossOf(model.forward(images, { cpe: crop })).backward());
        opt.zeroGrad();
      },
    ];
    const ms: number[] = [];
    for (const run of passes) ms.push((await timeCase({ ...base, backend: device }, device, run, { warmup: 0, minRepeats: breakdown, minTimeMs: 0 })).medianMs);
    ms.push(rec.medianMs);
    phasesMs = { forward: ms[0], loss: ms[1] - ms[0], backward: ms[2] - ms[1], optimizer: ms[3] - ms[2] };
  }

  for (const t of [images, crop.scale!, crop.offset!, crop.keep, ...TEACHERS.flatMap((t) => [targets[t].summary, targets[t].features])]) t?.dispose();
  model.dispose();
  await synchronize(device);

  const records: BenchRecord[] = [];
  const details: Record<string, unknown> = { losses, warmupMs, phasesMs, threads: os.cpus().length, loadAvg };
  const notes = [`${rec.imgPerS.toFixed(2)} img/s`];
  const torchOn = (device === 'cpu' || device === 'cuda') && process.env.AM_RADIO_BENCH_TORCH !== '0';
  const compileFor = process.env.AM_RADIO_BENCH_TRAIN_COMPILE;
  const compile = device === 'cuda' && (compileFor === undefined || compileFor === '' || compileFor.split(',').map((s) => s.trim()).includes(dtype));
  const modes: Array<'eager' | 'compile'> = !torchOn ? [] : compile ? ['eager', 'compile'] : ['eager'];
  rec.vsTorch = {};
  for (const mode of modes) {
    const r = runTorch(checkpoint, caseDir, device, dtype, mode === 'compile');
    if (!r) continue;
    const agreement = r.losses.map((l, i) => relErr(losses[i], l));
    const ok = agreement.every((e) => e <= LOSS_TOLERANCE[dtype]);
    records.push({
      ...base,
      backend: device === 'cuda' ? 'torch-cuda' : 'torch-cpu',
      torchMode: mode,
      medianMs: r.medianMs,
      minMs: r.minMs,
      repeats: r.repeats,
      gflopPerS: flops / (r.medianMs * 1e-3) / 1e9,
      imgPerS: batch / (r.medianMs / 1000),
      note: `${(batch / (r.medianMs / 1000)).toFixed(2)} img/s; torch ${r.torch} ${mode}${dtype === 'bf16' ? ' (autocast)' : ''}`,
      details: { losses: r.losses, warmupMs: r.warmupMs, phasesMs: r.phasesMs, threads: r.threads, attention: r.attention, adamw: r.adamw, lossRelErr: agreement, loadAvg: r.loadAvg },
    });
    rec.vsTorch[mode] = r.medianMs / rec.medianMs;
    details[`lossRelErr_${mode}`] = agreement;
    notes.push(`${rec.vsTorch[mode]!.toFixed(2)}x torch ${mode}`);
    const say = `train: ${label} ${dtype} on ${device}: loss ours ${losses.map((l) => l.toPrecision(8)).join(', ')}; torch ${mode} ${r.losses.map((l) => l.toPrecision(8)).join(', ')}; relative error ${agreement.map((e) => e.toExponential(1)).join(', ')}`;
    console.log(ok ? say : `${say}\ntrain: WARNING: the losses disagree beyond ${LOSS_TOLERANCE[dtype]}: the two steps do not compute the same thing, so the timings are not comparable`);
    if (!ok) notes.push('LOSS MISMATCH');
  }
  if (device === 'sim') notes.push('sim is an emulator: small model, not ViT-B');
  rec.note = notes.join('; ');
  rec.details = details;
  return [rec, ...records];
}

async function main(): Promise<void> {
  // sim emulates every CUDA thread on the CPU: a training step there times the emulator, so only when named.
  const devices = benchDevices(['sim']);
  const dtypes = benchDtypes();
  const records: BenchRecord[] = [];
  const tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'am-radio-bench-train-'));
  try {
    const written = new Map<ModelSpec, string>();
    for (const device of devices) {
      const m = device === 'sim' ? SIM_MODEL : VIT_B;
      let checkpoint = written.get(m);
      if (!checkpoint) {
        checkpoint = path.join(tmp, m.name.replace(/[^A-Za-z0-9]+/g, '-'));
        await writeRandomCheckpoint(checkpoint, m, 'train');
        written.set(m, checkpoint);
      }
      for (const dtype of dtypes) records.push(...(await benchCase(device, dtype, m, checkpoint, tmp)));
    }
  } finally {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  }
  printTable('train (one step: forward, multi-teacher loss, backward, AdamW; GFLOP/s = 3x forward FLOPs / median)', records);
  for (const r of records) {
    const p = (r.details?.phasesMs ?? undefined) as Record<string, number> | undefined;
    const load = r.details?.loadAvg as number | undefined;
    const at = load !== undefined ? ` (load average ${load.toFixed(1)} on ${os.cpus().length} cpus)` : '';
    if (p) console.log(`phases ${r.backend}${r.torchMode ? ` ${r.torchMode}` : ''} ${r.dtype}: ${Object.entries(p).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join(', ')}${at}`);
    else if (at) console.log(`${r.backend}${r.torchMode ? ` ${r.torchMode}` : ''} ${r.dtype}:${at}`);
  }
  console.log(`results: ${writeResults('train', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
