// Fills a module tree from a checkpoint: every parameter and buffer is read under its own key, checked against
// the shape the module has, and uploaded into the module's tensor (converted to its dtype on the way).
import { SafetensorsFile } from '../io/safetensors';
import { native } from '../native';
import type { Module } from '../nn/module';
import { Parameter } from '../nn/parameter';

/** Reads every parameter and buffer of m from file; a missing or misshapen tensor is an Error naming file and key. */
export async function fillFromCheckpoint(m: Module, file: SafetensorsFile, prefix: string): Promise<void> {
  const bare = !file.has(`${prefix}model.patch_generator.embedder.weight`);
  for (const [key, t] of [...m.namedParameters(), ...m.namedBuffers()]) {
    const k = bare && key.startsWith(prefix) ? key.slice(prefix.length) : key;
    const { data } = await file.readFloat(k, t.shape);
    native.upload(t.native('load'), data, t.dtype);
    if (t instanceof Parameter) t.markModified();
  }
}
