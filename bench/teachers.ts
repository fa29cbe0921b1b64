// Teacher forwards: HfVisionModel on random-weight checkpoints in transformers' layout at each teacher's RADIO
// training resolution (DINOv2-g/14 at 224, CLIP-L/14 at 336, SigLIP-so400m/14 at 384, SAM-H at 1024), beside the
// original implementation (facebookresearch/dinov2, openai/CLIP, timm's SigLIP, segment-anything, run by
// bench/torch_teachers.py, which also
// writes the weights, so both sides run the same model) when torch and the reference sources are there; else the
// weights are random values written here and only our side is timed. cpu: batch 1; cuda: batch 32 (bf16 beside
// eager autocast and torch.compile); sim, an emulator, runs a 2-layer model of each family.
//   AM_RADIO_BENCH_REFERENCE  DINOV2_DIR:CLIP_DIR:TIMM_DIR:SAM_DIR, the four reference checkouts
//   AM_RADIO_BENCH_TEACHERS   a comma-separated subset of dinov2-g14, clip-l14-336, siglip-so400m14-384, sam-h16-1024
//   AM_RADIO_BENCH_PYTHON     the interpreter with torch (default /usr/bin/python3, where Debian's is)
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { disposeEncoderOutput, loadTeacherEncoder, rand, randn, readHfVisionConfig, readSamConfig, synchronize, writeSafetensors } from '../ts';
import type { Device, SafetensorsWriteInput, Tensor } from '../ts';
import { hfCheckpointLayout, HfVisionModel } from '../ts/teachers/hf/model';
import { samCheckpointLayout, SamVisionModel } from '../ts/teachers/hf/sam';
import { agreementWith, BenchRecord, benchDevices, benchDtypes, printTable, runTorchModel, timeCase, torchModelRecord, TorchModelRun, writeResults } from './harness';
import { seconds } from './radio-models';

interface Preset {
  config: Record<string, unknown>;
  preprocessor: Record<string, unknown>;
  size: number;
}

const IMAGENET = { image_mean: [0.485, 0.456, 0.406], image_std: [0.229, 0.224, 0.225] };
const CLIP = { image_mean: [0.48145466, 0.4578275, 0.40821073], image_std: [0.26862954, 0.26130258, 0.27577711] };
const HALF = { image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5] };

// The published models' transformers configs (facebook/dinov2-giant, openai/clip-vit-large-patch14-336,
// google/siglip-so400m-patch14-384); `small` keeps the family and shrinks it for the emulator.
function presets(small: boolean): Record<string, Preset> {
  const s = (big: number, tiny: number) => (small ? tiny : big);
  return {
    'dinov2-g14': {
      config: { architectures: ['Dinov2Model'], model_type: 'dinov2', hidden_size: s(1536, 64), num_hidden_layers: s(40, 2), num_attention_heads: s(24, 4), mlp_ratio: 4, use_swiglu_ffn: true, image_size: 518, patch_size: 14, layer_norm_eps: 1e-6, layerscale_value: 1.0, hidden_act: 'gelu', qkv_bias: true },
      preprocessor: { ...IMAGENET, crop_size: { height: 224, width: 224 } },
      size: s(224, 112),
    },
    'clip-l14-336': {
      config: { architectures: ['CLIPVisionModelWithProjection'], model_type: 'clip_vision_model', hidden_size: s(1024, 64), intermediate_size: s(4096, 256), num_hidden_layers: s(24, 2), num_attention_heads: s(16, 4), image_size: 336, patch_size: 14, projection_dim: s(768, 32), hidden_act: 'quick_gelu', layer_norm_eps: 1e-5 },
      preprocessor: { ...CLIP, crop_size: { height: 336, width: 336 } },
      size: s(336, 112),
    },
    'sam-h16-1024': {
      config: { architectures: ['SamVisionModel'], model_type: 'sam_vision_model', hidden_size: s(1280, 64), output_channels: s(256, 32), num_hidden_layers: s(32, 2), num_attention_heads: s(16, 4), image_size: s(1024, 112), patch_size: 16, window_size: s(14, 3), global_attn_indexes: small ? [1] : [7, 15, 23, 31], layer_norm_eps: 1e-6 },
      preprocessor: { ...IMAGENET },
      size: s(1024, 112),
    },
    'siglip-so400m14-384': {
      config: { architectures: ['SiglipVisionModel'], model_type: 'siglip_vision_model', hidden_size: s(1152, 64), intermediate_size: s(4304, 256), num_hidden_layers: s(27, 2), num_attention_heads: s(16, 4), image_size: 384, patch_size: 14, hidden_act: 'gelu_pytorch_tanh', layer_norm_eps: 1e-6 },
      preprocessor: { ...HALF, size: { height: 384, width: 384 } },
      size: s(384, 112),
    },
  };
}

/** Random weights in the checkpoint's own layout (no reference run): N(0, 0.02), norms near 1. */
async function writeRandomWeights(dir: string): Promise<void> {
  const raw = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  let layout: Array<[string, number[]]>;
  if (String(raw.model_type).startsWith('sam')) {
    const shell = new SamVisionModel(readSamConfig(dir), 'f32', 'cpu');
    layout = samCheckpointLayout(shell);
    shell.dispose();
  } else {
    const config = readHfVisionConfig(dir);
    const shell = new HfVisionModel(config, 'f32', 'cpu', config.arch === 'clip' ? raw.projection_dim ?? 512 : null);
    layout = hfCheckpointLayout(shell);
    shell.dispose();
  }
  const entries: Record<string, SafetensorsWriteInput> = {};
  const made: Tensor[] = [];
  let seed = 1;
  for (const [key, shape] of layout) {
    const t = /norm|layernorm|lambda1/.test(key) && shape.length === 1 ? rand(shape, { seed: seed++ }) : randn(shape, { seed: seed++ }).scale(0.02);
    made.push(t);
    entries[key] = { data: t, dtype: 'BF16' };
  }
  await writeSafetensors(path.join(dir, 'model.safetensors'), entries);
  for (const t of made) t.dispose();
}

async function main(): Promise<void> {
  const records: BenchRecord[] = [];
  const tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'am-radio-bench-teachers-'));
  const wanted = process.env.AM_RADIO_BENCH_TEACHERS?.split(',').map((s) => s.trim());
  try {
    for (const device of benchDevices()) {
      const all = presets(device === 'sim');
      for (const name of Object.keys(all).filter((n) => !wanted || wanted.includes(n))) {
        const preset = all[name];
        const batch = device === 'cuda' ? 32 : 1;
        const side = preset.size;
        const dir = path.join(tmp, `${name}-${device}`);
        await fs.promises.mkdir(dir, { recursive: true });
        await fs.promises.writeFile(path.join(dir, 'config.json'), JSON.stringify(preset.config, null, 1));
        await fs.promises.writeFile(path.join(dir, 'preprocessor_config.json'), JSON.stringify(preset.preprocessor, null, 1));
        const io = path.join(dir, 'io.safetensors');
        const images = rand([batch, 3, side, side], { seed: 7 });
        await writeSafetensors(io, { images });
        for (const dtype of benchDtypes()) {
          const torchRuns: Array<['eager' | 'compile', TorchModelRun]> = [];
          if (device !== 'sim')
            for (const compile of device === 'cuda' ? [false, true] : [false]) {
              const r = runTorchModel('teachers', 'torch_teachers.py', ['dinov2', 'clip', 'timm', 'sam'], dir, io, { device, dtype, compile, repeats: device === 'cuda' ? 10 : 2 });
              if (r) torchRuns.push([compile ? 'compile' : 'eager', r]);
            }
          if (!fs.existsSync(path.join(dir, 'model.safetensors'))) {
            const t0 = performance.now();
            await writeRandomWeights(dir);
            console.log(`teachers: wrote random ${name} weights in ${seconds(t0)}`);
          }
          const model = await loadTeacherEncoder(dir, { device, dtype, onWarning: () => undefined });
          const x = images.to(device);
          let t0 = performance.now();
          const out = model.forward(x);
          await synchronize(device);
          const warmMs = performance.now() - t0;
          console.log(`teachers: ${name} ${side}px ${dtype} on ${device}: warm-up forward ${seconds(t0)}; timing...`);
          t0 = performance.now();
          const timing = device === 'cuda' ? { warmup: 2, minRepeats: 10, minTimeMs: 1000 } : { warmup: 0, minRepeats: warmMs > 5000 ? 2 : 3, minTimeMs: 0 };
          const rec = await timeCase({ op: `teacher forward ${name} ${side}px`, shape: `B${batch} 3x${side}x${side}`, dtype, backend: device }, device, () => {
            disposeEncoderOutput(model.forward(x));
          }, timing);
          const notes = [`${(batch / (rec.medianMs / 1000)).toFixed(2)} img/s`];
          for (const [mode, r] of torchRuns) {
            const err = await agreementWith(out.features, r.out, 'features');
            records.push(torchModelRecord(rec, r, mode, batch));
            notes.push(`${(r.ms / rec.medianMs).toFixed(2)}x torch ${mode}`, `features rel. diff ${err.toExponential(1)} vs torch ${mode}`);
          }
          if (device === 'sim') notes.push('sim is an emulator: 2-layer models, not the full teachers');
          records.push({ ...rec, note: notes.join('; ') });
          disposeEncoderOutput(out);
          if (x !== images) x.dispose();
          model.dispose();
        }
        images.dispose();
        await fs.promises.rm(dir, { recursive: true, force: true });
      }
    }
  } finally {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  }
  printTable('teachers', records);
  console.log(`results: ${writeResults('teachers', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
