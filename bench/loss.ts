// Multi-teacher loss throughput for the paper's stage-2 setup: ViT-H/16 student at 432 px (27² grid) distilled from
// DFN CLIP-H (27² × 1024), OpenAI CLIP-L (24² × 768) and DINOv2-g (16² × 1536), batch 32. Bytes = every input read
// once + every student gradient written once. Also prints the op's peak extra memory against what a PyTorch-style
// composite materialises, counted analytically, and times that composite on Debian's torch (CPU) when present.
import { spawnSync } from 'child_process';

import { Device, DType, ops, randn, Tensor } from '../ts';
import type { TeacherTerm } from '../ts/ops';
import { BenchRecord, benchDevices, printTable, timeCase, writeResults } from './harness';

const STUDENT: [number, number] = [27, 27];
const TEACHERS = [
  { name: 'CLIP-H', grid: [27, 27] as [number, number], channels: 1024 },
  { name: 'CLIP-L', grid: [24, 24] as [number, number], channels: 768 },
  { name: 'DINOv2-g', grid: [16, 16] as [number, number], channels: 1536 },
];
const BATCH = 32;
const SIM_BATCH = 2;

const size = (dtype: DType) => (dtype === 'bf16' ? 2 : 4);
const tokens = (g: [number, number]) => g[0] * g[1];

function makeTerms(batch: number, dtype: DType, device: Device): TeacherTerm[] {
  let seed = 1;
  const t = (shape: number[], requiresGrad: boolean) => randn(shape, { seed: seed++, dtype, device, requiresGrad });
  return TEACHERS.map((teacher) => ({
    student: {
      summary: t([batch, teacher.channels], true),
      features: t([batch, tokens(STUDENT), teacher.channels], true),
      grid: STUDENT,
    },
    teacher: {
      summary: t([batch, teacher.channels], false),
      features: t([batch, tokens(teacher.grid), teacher.channels], false),
      grid: teacher.grid,
    },
  }));
}

/** Inputs read once, plus the student gradients written once when they are computed. */
function bytesMoved(batch: number, dtype: DType, withGrad: boolean): number {
  let elements = 0;
  for (const t of TEACHERS) {
    const student = batch * t.channels * (1 + tokens(STUDENT));
    const teacher = batch * t.channels * (1 + tokens(t.grid));
    elements += student + teacher + (withGrad ? student : 0);
  }
  return elements * size(dtype);
}

/** Work items and scratch of the fused op, by the same rules as native/loss/plan.cpp (student on the larger grid). */
function fusedScratchBytes(batch: number): number {
  let items = 0;
  for (const t of TEACHERS) {
    const grid = [Math.max(STUDENT[0], t.grid[0]), Math.max(STUDENT[1], t.grid[1])] as [number, number];
    items += Math.ceil(batch / 8) + Math.ceil((batch * tokens(grid)) / 32);
  }
  return items * 2 * 4;
}

/**
 * What the composite of scripts/fixtures/make_loss_fixtures.py keeps alive in its forward pass, per teacher on the
 * common grid: the resized teacher map (when resized), both normalised maps and their product for the cosine, and the
 * unreduced smooth-L1 terms. Backward temporaries come on top, so this is a lower bound.
 */
function compositeBytes(batch: number, dtype: DType): number {
  let elements = 0;
  for (const t of TEACHERS) {
    const e = batch * tokens(STUDENT) * t.channels;
    const resized = t.grid[0] !== STUDENT[0] || t.grid[1] !== STUDENT[1];
    elements += e * ((resized ? 1 : 0) + 3 + 1);
  }
  return elements * size(dtype);
}

function studentBytes(batch: number, dtype: DType): number {
  return TEACHERS.reduce((a, t) => a + batch * t.channels * (1 + tokens(STUDENT)), 0) * size(dtype);
}

/** The same composite timed on PyTorch's CPU backend (forward + backward), or null when torch is not installed. */
function torchCpu(batch: number, dtype: DType): { medianMs: number; repeats: number } | null {
  const script = `
import json, statistics, time, torch, torch.nn.functional as F
torch.manual_seed(0)
B, S, dt = ${batch}, ${JSON.stringify(STUDENT)}, ${dtype === 'bf16' ? 'torch.bfloat16' : 'torch.float32'}
teachers = ${JSON.stringify(TEACHERS.map((t) => [t.grid, t.channels]))}
data = [(torch.randn(B, C, dtype=dt, requires_grad=True), torch.randn(B, C, dtype=dt),
         torch.randn(B, C, *S, dtype=dt, requires_grad=True), torch.randn(B, C, *g, dtype=dt)) for g, C in teachers]
def step():
    total = 0
    for y, z, f, g in data:
        if tuple(g.shape[2:]) != tuple(S): g = F.interpolate(g, size=S, mode='bilinear', align_corners=False)
        total = total + (1 - F.cosine_similarity(y, z, dim=1)).mean()
        total = total + 0.9 * (1 - F.cosine_similarity(f, g, dim=1)).mean() + 0.1 * F.smooth_l1_loss(f, g)
    total.backward()
    for y, _, f, _ in data: y.grad = None; f.grad = None
step()
times = []
for _ in range(3):
    t0 = time.perf_counter(); step(); times.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({'medianMs': statistics.median(times), 'repeats': len(times)}))
`;
  const r = spawnSync('/usr/bin/python3', ['-c', script], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) return null;
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const mb = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;

async function main(): Promise<void> {
  const devices = benchDevices();
  const records: BenchRecord[] = [];
  for (const device of devices) {
    const batch = device === 'sim' ? SIM_BATCH : BATCH;
    for (const dtype of ['f32', 'bf16'] as const) {
      const terms = makeTerms(batch, dtype, device);
      const shape = `B${batch} 27²: CLIP-H 27²×1024, CLIP-L 24²×768, DINOv2-g 16²×1536`;
      const note = device === 'sim' ? `sim: batch ${SIM_BATCH}, not ${BATCH}` : '';
      for (const withGrad of [true, false]) {
        const run = () => {
          const out = withGrad ? ops.multiTeacherLoss(terms) : ops.multiTeacherLoss(terms.map(detachStudents));
          // Dropping the graph lets the kept gradients be collected; no backward runs here.
          out.total.gradNode = null;
          out.total.dispose();
          for (const t of out.terms) disposeAll(t.summary, t.features);
        };
        const c = { op: withGrad ? 'loss+grad' : 'loss only', shape, dtype, backend: device, bytes: bytesMoved(batch, dtype, withGrad) };
        records.push({ ...(await timeCase(c, device, run, { warmup: 1, minRepeats: 3, minTimeMs: 500 })), note });
      }
      for (const t of terms) disposeAll(t.student.summary, t.student.features, t.teacher.summary, t.teacher.features);
    }
  }
  for (const dtype of ['f32', 'bf16'] as const) {
    const r = process.env.AM_RADIO_BENCH_TORCH === '0' ? null : torchCpu(BATCH, dtype);
    if (r)
      records.push({
        op: 'composite loss+grad',
        shape: `B${BATCH} paper setup`,
        dtype,
        backend: 'torch-cpu',
        bytes: bytesMoved(BATCH, dtype, true),
        medianMs: r.medianMs,
        minMs: r.medianMs,
        repeats: r.repeats,
        gbPerS: bytesMoved(BATCH, dtype, true) / (r.medianMs * 1e-3) / 1e9,
        note: 'PyTorch eager: F.interpolate + F.cosine_similarity + F.smooth_l1_loss, autograd',
      });
  }
  printTable('multi-teacher loss', records);

  console.log(`\npeak extra memory at batch ${BATCH} (analytic)`);
  for (const dtype of ['f32', 'bf16'] as const) {
    const fused = fusedScratchBytes(BATCH);
    const kept = studentBytes(BATCH, dtype);
    const composite = compositeBytes(BATCH, dtype);
    console.log(
      `  ${dtype}: fused scratch ${mb(fused)} (+ kept student gradients ${mb(kept)}, the size of the gradients any ` +
        `implementation returns) vs composite ≥ ${mb(composite)} of resized maps and per-element terms; ` +
        `fused incl. kept gradients = ${((100 * (fused + kept)) / composite).toFixed(1)}% of the composite`,
    );
  }
  console.log(`results: ${writeResults('loss', records)}`);
}

function disposeAll(...tensors: Array<Tensor | undefined>): void {
  for (const t of tensors) t?.dispose();
}

function detachStudents(t: TeacherTerm): TeacherTerm {
  const d = (x?: Tensor) => x?.detach();
  return { ...t, student: { summary: d(t.student.summary), features: d(t.student.features), grid: t.student.grid } };
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
