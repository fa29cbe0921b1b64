// A RADIO checkpoint as a teacher (ViT RADIO or E-RADIO): a released model's adaptor heads (or its backbone)
// produce the targets that a smaller student distils, at the teacher's own input size.
import * as path from 'path';

import { noGrad } from '../autograd';
import { SafetensorsFile } from '../io/safetensors';
import { ERadioModel } from '../model/eradio/model';
import { AnyRadioModel, loadRadio } from '../model/load';
import type { RadioLoadOptions } from '../model/radio';
import type { Tensor } from '../tensor';
import type { Teacher, TeacherBatch, TeacherTargets } from './types';

export interface RadioTeacherOptions extends RadioLoadOptions {
  /** Name in logs and metrics; default the checkpoint's folder name. */
  name?: string;
  /** [h, w] in pixels, multiples of the teacher's resolution step; null (default): the student's resolution. */
  inputSize?: [number, number] | null;
  /**
   * Student head → teacher output ('backbone' or an adaptor name). Default: every adaptor of the checkpoint under
   * its own name.
   */
  heads?: Record<string, string>;
}

/** A ViT RADIO's backbone summary is the summary_idxs cls tokens side by side: its width is in the checkpoint. */
async function vitSummaryDim(dir: string, c: { defaultSummaryIdxs: number[]; embedDim: number }): Promise<number> {
  const file = await SafetensorsFile.open(path.join(dir, 'model.safetensors'));
  try {
    const idxKey = ['radio_model.summary_idxs', 'summary_idxs'].find((k) => file.has(k));
    return (idxKey ? file.entry(idxKey).shape[0] : c.defaultSummaryIdxs.length) * c.embedDim;
  } finally {
    await file.close();
  }
}

export class RadioTeacher implements Teacher {
  readonly needsImages = true;
  readonly heads: Record<string, { summaryDim: number | null; featureDim: number }> = {};

  private constructor(
    readonly name: string,
    readonly model: AnyRadioModel,
    readonly inputSize: [number, number] | null,
    private readonly mapping: Record<string, string>,
    private readonly useSummary: Record<string, boolean>,
    backboneSummaryDim: number,
  ) {
    const c = model.config;
    const backboneFeatureDim = model instanceof ERadioModel ? model.config.arch.neckDim : model.config.embedDim;
    for (const [head, source] of Object.entries(mapping)) {
      const a = c.adaptors.find((x) => x.name === source);
      const summaryDim = source === 'backbone' ? backboneSummaryDim : a!.summary.outputDim;
      this.heads[head] = { summaryDim: useSummary[head] ? summaryDim : null, featureDim: source === 'backbone' ? backboneFeatureDim : a!.feature.outputDim };
    }
  }

  /** Loads the checkpoint at dir in eval mode. */
  static async load(dir: string, opts: RadioTeacherOptions = {}): Promise<RadioTeacher> {
    // The ViT-only load options (ViTDet, CPE corners, training draws) go to loadRadio as such: an Error for E-RADIO.
    const { name: _name, inputSize: _size, heads: _heads, device, dtype, seed, onWarning, ...vit } = opts;
    const defined = Object.fromEntries(Object.entries(vit).filter(([, v]) => v !== undefined));
    const model = await loadRadio(dir, { device, dtype, seed, onWarning, ...(Object.keys(defined).length ? { vit: defined } : {}) });
    try {
      const c = model.config;
      const mapping = opts.heads ?? Object.fromEntries(c.adaptors.map((a) => [a.name, a.name]));
      if (Object.keys(mapping).length === 0) throw new Error(`RadioTeacher ${dir}: the checkpoint has no adaptor heads; map a student head to 'backbone' with opts.heads`);
      const useSummary: Record<string, boolean> = {};
      for (const [head, source] of Object.entries(mapping)) {
        const a = c.adaptors.find((x) => x.name === source);
        if (source !== 'backbone' && !a)
          throw new Error(`RadioTeacher ${dir}: heads.${head} names ${JSON.stringify(source)}, which is neither 'backbone' nor one of its adaptors (${c.adaptors.map((x) => x.name).join(', ')})`);
        useSummary[head] = source === 'backbone' || a!.useSummary;
      }
      const size = opts.inputSize ?? null;
      if (size !== null) {
        const step = model.resolutionStep;
        if (!Array.isArray(size) || size.length !== 2 || !size.every((v) => Number.isInteger(v) && v > 0 && v % step === 0))
          throw new Error(`RadioTeacher ${dir}: inputSize must be [h, w] in pixels, multiples of ${step}, got ${JSON.stringify(size)}`);
      }
      const backboneSummaryDim = model instanceof ERadioModel ? model.config.arch.neckDim : await vitSummaryDim(dir, model.config);
      const name = opts.name ?? (dir.split(/[\\/]/).filter(Boolean).pop() || 'radio');
      return new RadioTeacher(name, model, size ? [size[0], size[1]] : null, mapping, useSummary, backboneSummaryDim);
    } catch (e) {
      model.dispose();
      throw e;
    }
  }

  async forward(images: Tensor, _batch: TeacherBatch): Promise<TeacherTargets> {
    const [, , H, W] = images.shape;
    const out = noGrad(() => this.model.forward(images));
    const targets: TeacherTargets = {};
    const used = new Set<Tensor>();
    for (const [head, source] of Object.entries(this.mapping)) {
      const o = out[source];
      // Two student heads may learn the same teacher output: each gets its own handle to dispose.
      const own = (t: Tensor) => (used.has(t) ? t.alias() : (used.add(t), t));
      targets[head] = { features: own(o.features), grid: this.model.featureGrid(source, H, W), ...(this.useSummary[head] ? { summary: own(o.summary) } : {}) };
    }
    for (const o of Object.values(out)) for (const t of [o.summary, o.features]) if (!used.has(t)) t.dispose();
    return targets;
  }

  async close(): Promise<void> {
    this.model.dispose();
  }
}
