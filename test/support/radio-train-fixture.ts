// The reference implementation's training-step fixtures (test/fixtures/radio/train-*; train-b16-v2heads by
// default): their case, their tensors, and the loss they were trained with, for the training tests.
import * as fs from 'fs';
import * as path from 'path';

import { ops, SafetensorsFile, tensor } from '../../ts';
import type { CpeCrop, Device, RadioOutput, Tensor } from '../../ts';
import type { TeacherTerm } from '../../ts/ops';

export const TRAIN_FIXTURE = path.join(__dirname, '..', 'fixtures', 'radio', 'train-b16-v2heads');
export const HEADS = ['clip', 'dino_v2', 'sam'] as const;

interface Case {
  student_grid: [number, number];
  teacher_grids: Record<string, [number, number]>;
  weights: Record<string, { summary: number; features: number }>;
  loss: { mode: 'cosine+smoothl1'; alpha: number; beta: number; delta: number };
  total: number;
}

export class TrainFixture {
  /** The adaptor heads the case trains against a teacher, in case.json's order. */
  readonly heads: string[];

  private constructor(readonly dir: string, readonly spec: Case, readonly io: Map<string, { data: Float32Array; shape: number[] }>) {
    this.heads = Object.keys(spec.teacher_grids);
  }

  static async read(dir: string = TRAIN_FIXTURE): Promise<TrainFixture> {
    const c = JSON.parse(await fs.promises.readFile(path.join(dir, 'case.json'), 'utf8'));
    const file = await SafetensorsFile.open(path.join(dir, 'io.safetensors'));
    const io = new Map();
    for (const k of file.keys()) io.set(k, await file.readFloat(k));
    await file.close();
    return new TrainFixture(dir, c, io);
  }

  onDevice(key: string, device: Device): Tensor {
    const e = this.io.get(key);
    if (!e) throw new Error(`train fixture: no tensor '${key}'`);
    return tensor(e.data, e.shape, { device });
  }

  /** The parameter keys the reference gave a gradient. */
  gradKeys(): string[] {
    return [...this.io.keys()].filter((k) => k.startsWith('grad.')).map((k) => k.slice(5));
  }

  /** The CPE crop and position dropout the reference drew. */
  replay(device: Device): Required<CpeCrop> {
    return { scale: this.onDevice('cpe.scale', device), offset: this.onDevice('cpe.offset', device), keep: this.onDevice('cpe.keep', device) };
  }

  /** The case's loss terms: each head against its teacher, on the teacher's own grid, with the case's weights. */
  terms(out: RadioOutput, device: Device): TeacherTerm[] {
    return this.heads.map((h) => {
      const hasSummary = this.io.has(`teacher.${h}.summary`);
      return {
        student: { summary: hasSummary ? out[h].summary : undefined, features: out[h].features, grid: this.spec.student_grid },
        teacher: {
          summary: hasSummary ? this.onDevice(`teacher.${h}.summary`, device) : undefined,
          features: this.onDevice(`teacher.${h}.features`, device),
          grid: this.spec.teacher_grids[h],
        },
        summaryWeight: this.spec.weights[h].summary,
        featureWeight: this.spec.weights[h].features,
      };
    });
  }

  lossOf(out: RadioOutput, device: Device): ops.MultiTeacherLossResult {
    const { mode, alpha, beta, delta } = this.spec.loss;
    return ops.multiTeacherLoss(this.terms(out, device), { mode, alpha, beta, delta });
  }
}
