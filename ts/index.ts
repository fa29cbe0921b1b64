// am-radio: AM-RADIO vision backbones for Node.js.
export { backends, emptyCache, memory, queueDepth, requireBackend, setQueueDepth, synchronize } from './backends';
export type { BackendInfo } from './backends';
export { full, ones, rand, randn, tensor, Tensor, zeros } from './tensor';
export type { DType, Device, TensorOptions } from './tensor';
export { isGradEnabled, noGrad } from './autograd';
export type { GradNode } from './autograd';
export * as debug from './debug';
export * as ops from './ops';
export * as nn from './nn';
export { escape, tidy } from './scope';
export { AdamW } from './optim/adamw';
export type { AdamWOptions } from './optim/adamw';
export { RadioModel } from './model/radio';
export type { RadioForwardOptions, RadioHeadOutput, RadioLoadOptions, RadioOutput } from './model/radio';
export type { CpeCrop } from './model/cpe';
export type { AdaptorConfig, MlpHeadConfig, RadioConfig, VitDetConfig, VitDetOverride } from './model/config';
export { SafetensorsFile, writeSafetensors } from './io/safetensors';
export type { SafetensorsDType, SafetensorsEntry, SafetensorsTensorWriteEntry, SafetensorsWriteEntry, SafetensorsWriteInput } from './io/safetensors';
