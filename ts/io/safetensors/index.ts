// The safetensors format: SafetensorsFile reads and validates a file, ShardedSafetensors a sharded checkpoint
// (openWeights picks), writeSafetensors writes one atomically.
export { SafetensorsFile, MAX_HEADER_BYTES } from './read';
export type { SafetensorsEntry } from './read';
export { openWeights, readShardIndex, shardIndexName, ShardedSafetensors } from './sharded';
export type { TensorReader } from './sharded';
export { writeSafetensors } from './write';
export type { SafetensorsTensorWriteEntry, SafetensorsWriteEntry, SafetensorsWriteInput } from './write';
export type { SafetensorsDType } from './dtype';
