// RADIO checkpoint folders (config.json + model.safetensors, Hugging Face layout) made on the fly, for the tests.
import * as fs from 'fs';
import * as path from 'path';

import { writeSafetensors } from '../../ts';
import type { SafetensorsWriteEntry } from '../../ts';
import { parseRadioConfig } from '../../ts/model/config';
import { randomCheckpointTensors } from '../../ts/model/layout';

/** Writes `dir`/config.json and `dir`/model.safetensors (creating `dir`). */
export async function writeCheckpoint(dir: string, config: object, tensors: Record<string, SafetensorsWriteEntry>): Promise<void> {
  await fs.promises.mkdir(dir, { recursive: true });
  await fs.promises.writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
}

/** Random weights of a trained network's scale for a config.json object (ts/model/layout.ts). */
export function randomRadioTensors(config: object, seed = 1): Record<string, SafetensorsWriteEntry> {
  return randomCheckpointTensors(parseRadioConfig(config, 'randomRadioTensors'), seed);
}
