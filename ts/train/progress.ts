// What a run tells the person watching it: one line rewritten in place on a terminal, plain periodic lines
// otherwise (CI logs, files), and one JSON object per step in a metrics file for plots and tools.
import * as fs from 'fs';

export interface StepMetrics {
  /** Optimizer steps done, this one included (1-based). */
  step: number;
  lr: number;
  /** The weighted total, averaged over the micro-batches; NaN or Infinity on a skipped step. */
  loss: number;
  /** Unweighted terms, `<teacher>.<head>.summary` / `.features`, averaged over the micro-batches. */
  terms: Record<string, number>;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  skipped: boolean;
  images: number;
  /** Seconds since the run (or the resumed run) started. */
  elapsed: number;
  /** With ViTDet augmentation: the window size each micro-batch drew (null: global). */
  windows?: Array<number | null>;
  /** With rankGroups: each group's mean loss over its images (averaged over the micro-batches), by group. */
  groups?: number[];
  /** With a process group: the step's gradient all-reduces (one per bucket). */
  allReduces?: number;
}

const fmtTime = (s: number) => {
  if (!Number.isFinite(s)) return '?';
  const t = Math.round(s);
  return t >= 3600 ? `${Math.floor(t / 3600)}h${String(Math.floor(t / 60) % 60).padStart(2, '0')}m` : t >= 60 ? `${Math.floor(t / 60)}m${String(t % 60).padStart(2, '0')}s` : `${t}s`;
};
const num = (v: number) => (Number.isFinite(v) ? (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e4 ? v.toFixed(4) : v.toExponential(2)) : String(v));

export interface ProgressOptions {
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Default: the stream's isTTY. */
  tty?: boolean;
  /** Plain mode prints every this many steps (and the first and last); default totalSteps/20. */
  every?: number;
  totalSteps: number;
  firstStep: number;
}

export class Progress {
  private readonly stream: NodeJS.WritableStream;
  private readonly tty: boolean;
  private readonly every: number;
  private wrote = false;

  constructor(private readonly o: ProgressOptions) {
    this.stream = o.stream ?? process.stderr;
    this.tty = o.tty ?? !!(o.stream ?? process.stderr).isTTY;
    this.every = o.every ?? Math.max(1, Math.round(o.totalSteps / 20));
  }

  line(m: StepMetrics): string {
    const rate = m.images / Math.max(m.elapsed, 1e-9);
    const stepsPerSec = (m.step - this.o.firstStep) / Math.max(m.elapsed, 1e-9);
    const eta = (this.o.totalSteps - m.step) / stepsPerSec;
    const terms = Object.entries(m.terms).map(([k, v]) => `${k} ${num(v)}`).join('  ');
    return `step ${m.step}/${this.o.totalSteps}  ${rate.toFixed(1)} img/s  ETA ${fmtTime(eta)}  lr ${m.lr.toExponential(2)}  loss ${num(m.loss)}  |g| ${num(m.gradNorm)}  ${terms}`;
  }

  step(m: StepMetrics): void {
    if (m.skipped) {
      this.message(`step ${m.step}: skipped (loss ${m.loss}, gradient norm ${m.gradNorm}); weights and optimizer state unchanged`);
      return;
    }
    if (this.tty) {
      this.stream.write(`\r\x1b[K${this.line(m)}`);
      this.wrote = true;
    } else if (m.step === this.o.firstStep + 1 || m.step % this.every === 0 || m.step === this.o.totalSteps) this.stream.write(`${this.line(m)}\n`);
  }

  /** A line of its own (kept on a terminal, above the progress line). */
  message(text: string): void {
    if (this.tty && this.wrote) this.stream.write('\r\x1b[K');
    this.stream.write(`${text}\n`);
    this.wrote = false;
  }

  done(): void {
    if (this.tty && this.wrote) this.stream.write('\n');
    this.wrote = false;
  }
}

/** Appends one JSON object per step; on resume, drops the lines after the resumed step first. */
export class MetricsFile {
  constructor(readonly file: string, resumedAt: number | null) {
    if (resumedAt === null) fs.writeFileSync(file, '');
    else {
      const kept = readMetrics(file).filter((m) => m.step <= resumedAt);
      fs.writeFileSync(file, kept.map((m) => `${JSON.stringify(m)}\n`).join(''));
    }
  }

  append(m: StepMetrics): void {
    fs.appendFileSync(this.file, `${JSON.stringify(m, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v))}\n`);
  }
}

/** The steps recorded in a metrics file (a missing file is none); a torn last line (a crash mid-append) is dropped. */
export function readMetrics(file: string): StepMetrics[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: StepMetrics[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line, (_k, v) => (v === 'NaN' || v === 'Infinity' || v === '-Infinity' ? Number(v) : v)));
    } catch {
      break;
    }
  }
  return out;
}
