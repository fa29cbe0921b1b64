// One entry point for every RADIO checkpoint folder: config.json decides whether it is a ViT RADIO (RadioModel) or
// an E-RADIO (ERadioModel); both give the same outputs (backbone + adaptor heads, summary and features).
import * as fs from 'fs';
import * as path from 'path';

import type { DType, Device } from '../native';
import { isERadioConfig } from './eradio/config';
import { ERadioModel } from './eradio/model';
import { RadioModel, RadioLoadOptions } from './radio';

/** A loaded RADIO student of either family. */
export type AnyRadioModel = RadioModel | ERadioModel;

export interface LoadRadioOptions {
  device?: Device;
  dtype?: DType;
  /** ViT only: the training draws' seed (see RadioLoadOptions.seed). */
  seed?: number;
  onWarning?: (message: string) => void;
  /** ViT-only options; an Error with an E-RADIO checkpoint. */
  vit?: Omit<RadioLoadOptions, 'device' | 'dtype' | 'seed' | 'onWarning'>;
}

/** Whether dir/config.json names an E-RADIO architecture (false when it cannot be read: the loader then says why). */
export async function isERadioCheckpoint(dir: string): Promise<boolean> {
  try {
    return isERadioConfig(JSON.parse(await fs.promises.readFile(path.join(dir, 'config.json'), 'utf8')));
  } catch {
    return false;
  }
}

/** Loads a RADIO checkpoint folder of either architecture in eval mode. */
export async function loadRadio(dir: string, opts: LoadRadioOptions = {}): Promise<AnyRadioModel> {
  const { vit, ...common } = opts;
  if (await isERadioCheckpoint(dir)) {
    if (vit && Object.keys(vit).length) throw new Error(`loadRadio: ${dir} is an E-RADIO checkpoint; the ViT options ${Object.keys(vit).join(', ')} do not apply`);
    return ERadioModel.load(dir, { device: common.device, dtype: common.dtype, onWarning: common.onWarning });
  }
  return RadioModel.load(dir, { ...vit, ...common });
}
