// Teacher.fromPretrained: one entry point for every teacher checkpoint, the architecture read from config.json.
import * as fs from 'fs';
import * as path from 'path';

import type { HubDownloadOptions } from '../model/hub';
import { isHfVisionFolder } from './hf/config';
import { HfTeacher, HfTeacherOptions, resolveFolder } from './hf/teacher';
import { RadioTeacher, RadioTeacherOptions } from './radio';
import type { Teacher as TeacherShape } from './types';

export type Teacher = TeacherShape;

export interface TeacherFromPretrainedOptions {
  /** Options for a Hugging Face encoder (DINOv2, CLIP, SigLIP, SigLIP2 NaFlex, SAM). */
  hf?: HfTeacherOptions;
  /** Options for a RADIO checkpoint (ViT RADIO or E-RADIO). */
  radio?: RadioTeacherOptions;
  /** Where a hub repo id is fetched from and cached. */
  hub?: HubDownloadOptions;
}

function isRadioFolder(dir: string): boolean {
  try {
    const c = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    // Both RADIO families (ViT and E-RADIO) carry their training args in config.json.
    return Boolean(c && typeof c === 'object' && c.args && typeof c.args === 'object');
  } catch {
    return false;
  }
}

export const Teacher = {
  /**
   * The teacher in a folder or hub repo: a Hugging Face DINOv2 / CLIP / SigLIP / SigLIP2 NaFlex / SAM encoder (config.json's model_type)
   * or a RADIO checkpoint (config.json's args), each loaded by its own class.
   */
  async fromPretrained(dirOrRepo: string, opts: TeacherFromPretrainedOptions = {}): Promise<TeacherShape> {
    const dir = await resolveFolder(dirOrRepo, opts.hub);
    if (isHfVisionFolder(dir)) return HfTeacher.load(dir, opts.hf);
    if (isRadioFolder(dir)) return RadioTeacher.load(dir, opts.radio);
    throw new Error(`Teacher.fromPretrained: ${dir} holds neither a supported Hugging Face vision encoder (config.json model_type dinov2, dinov2_with_registers, clip, clip_vision_model, siglip, siglip_vision_model, siglip2, siglip2_vision_model, sam, sam_vision_model) nor a RADIO checkpoint (config.json args)`);
  },
};
