// The safetensors format: SafetensorsFile reads and validates a file, writeSafetensors writes one atomically.
export { SafetensorsFile, MAX_HEADER_BYTES } from './read';
export type { SafetensorsEntry } from './read';
export { writeSafetensors } from './write';
export type { SafetensorsTensorWriteEntry, SafetensorsWriteEntry, SafetensorsWriteInput } from './write';
export type { SafetensorsDType } from './dtype';
