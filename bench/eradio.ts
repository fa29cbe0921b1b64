// E-RADIO forward: ERadioModel (stem, C2f stages, GRA transformer stages, high-res neck, summary) on a random-weight
// checkpoint written here, beside the reference PyTorch model (NVlabs/RADIO's own eradio_model.py, run by
// bench/torch_eradio.py on the same checkpoint and images in the same run) when the reference sources and torch are
// there. E-RADIO-L (`eradio`, the paper's Table 1 model) at 512 px: batch 1 on cpu, batch 32 on cuda (bf16 beside
// eager and torch.compile); sim, an emulator, runs eradio_xxxtiny at 256 px. The agreement with the reference's
// outputs is printed too, a full-size check that no test can afford.
//   AM_RADIO_BENCH_REFERENCE  RADIO_DIR:TIMM_DIR:EINOPS_DIR, the three reference checkouts (the torch run is skipped,
//                             saying so, without them)
//   AM_RADIO_BENCH_PYTHON     the interpreter with torch (default /usr/bin/python3, where Debian's is)
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { ERadioModel, formatProfile, profile, rand, synchronize, tensor, writeSafetensors } from '../ts';
import type { Device, SafetensorsWriteInput, Tensor } from '../ts';
import { parseERadioConfig } from '../ts/model/eradio/config';
import { ERadio } from '../ts/model/eradio/model';
import { agreementWith, BenchRecord, benchDevices, benchDtypes, printTable, runTorchModel, timeCase, torchModelRecord, writeResults } from './harness';
import { seconds } from './radio-models';

/** A random-init E-RADIO checkpoint (no adaptor heads) in the Hugging Face layout of the reference's HF loader. */
async function writeCheckpoint(dir: string, arch: string, window: number, side: number): Promise<void> {
  await fs.promises.mkdir(dir, { recursive: true });
  const config = {
    architectures: ['RADIOModel'], model_type: 'radio', version: 'e-radio_v2', patch_size: 16, max_resolution: 2048,
    preferred_resolution: [side, side], adaptor_names: [], adaptor_configs: {}, vitdet_window_size: null,
    feature_normalizer_config: null, inter_feature_normalizer_config: null, eradio_window_size: window,
    args: {
      model: arch, in_chans: null, input_size: null, pretrained: false, num_classes: 0, drop: 0.0, drop_path: null,
      drop_block: null, gp: null, bn_momentum: null, bn_eps: null, torchscript: false, initial_checkpoint: '',
      model_kwargs: { return_full_features: true }, cpe_max_size: null, teachers: [], cls_token_per_teacher: false,
      register_multiple: null, mlp_version: 'v2', model_norm: false, spectral_reparam: false, dtype: 'float32',
    },
  };
  await fs.promises.writeFile(path.join(dir, 'config.json'), JSON.stringify(config, null, 1));
  const model = new ERadio(parseERadioConfig(config, dir).arch, { device: 'cpu', seed: 11 });
  try {
    const entries: Record<string, SafetensorsWriteInput> = {
      'radio_model.input_conditioner.norm_mean': tensor([0.485, 0.456, 0.406], [3, 1, 1]),
      'radio_model.input_conditioner.norm_std': tensor([0.229, 0.224, 0.225], [3, 1, 1]),
    };
    for (const [k, t] of [...model.namedParameters(), ...model.namedBuffers()]) entries[`radio_model.model.${k}`] = { data: t, dtype: 'F32' };
    await writeSafetensors(path.join(dir, 'model.safetensors'), entries);
  } finally {
    model.dispose();
  }
}

async function main(): Promise<void> {
  const records: BenchRecord[] = [];
  const tmp = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'am-radio-bench-eradio-'));
  try {
    for (const device of benchDevices()) {
      const [arch, side, window] = device === 'sim' ? ['eradio_xxxtiny', 256, 8] as const : ['eradio', 512, 16] as const;
      const batch = device === 'cuda' ? 32 : 1;
      const dir = path.join(tmp, `${arch}-${device}`);
      let t0 = performance.now();
      await writeCheckpoint(dir, arch, window, side);
      console.log(`eradio: wrote a random ${arch} checkpoint in ${seconds(t0)}`);
      const io = path.join(dir, 'io.safetensors');
      const images = rand([batch, 3, side, side], { seed: 7 });
      await writeSafetensors(io, { images });
      for (const dtype of benchDtypes()) {
        const model = await ERadioModel.load(dir, { device, dtype });
        const x = images.to(device);
        t0 = performance.now();
        let out = model.forward(x);
        await synchronize(device);
        const warmMs = performance.now() - t0;
        console.log(`eradio: ${arch} ${side}px ${dtype} on ${device}: warm-up forward ${seconds(t0)}; timing...`);
        if (process.env.AM_RADIO_PROFILE === '1') {
          const { profile: p } = await profile(() => {
            const o = model.forward(x);
            for (const t of [o.backbone.summary, o.backbone.features]) t.dispose();
          }, { device });
          console.log(`eradio: ${arch} ${side}px ${dtype}, one forward\n${formatProfile(p)}`);
        }
        const timing = device === 'cuda' ? { warmup: 2, minRepeats: 10, minTimeMs: 1000 } : { warmup: 0, minRepeats: warmMs > 5000 ? 2 : 3, minTimeMs: 0 };
        const rec = await timeCase({ op: `eradio forward ${arch} ${side}px`, shape: `B${batch} 3x${side}x${side}`, dtype, backend: device }, device, () => {
          const o = model.forward(x);
          for (const t of [o.backbone.summary, o.backbone.features]) t.dispose();
        }, timing);
        const notes = [`${(batch / (rec.medianMs / 1000)).toFixed(2)} img/s`, `window ${window}`];
        if (device !== 'sim') {
          for (const compile of device === 'cuda' ? [false, true] : [false]) {
            const r = runTorchModel('eradio', 'torch_eradio.py', ['radio', 'timm', 'einops'], dir, io, { device, dtype, compile, repeats: device === 'cuda' ? 10 : timing.minRepeats });
            if (!r) continue;
            const mode = compile ? 'compile' : 'eager';
            const err = await agreementWith(out.backbone.features, r.out, 'backbone.features');
            records.push(torchModelRecord(rec, r, mode, batch));
            notes.push(`${(r.ms / rec.medianMs).toFixed(2)}x torch ${mode}`, `features rel. diff ${err.toExponential(1)} vs torch ${mode}`);
          }
        } else notes.push('sim is an emulator: xxxtiny at 256 px, not E-RADIO-L');
        records.push({ ...rec, note: notes.join('; ') });
        for (const t of [out.backbone.summary, out.backbone.features]) t.dispose();
        out = undefined as never;
        if (x !== images) x.dispose();
        model.dispose();
      }
      images.dispose();
    }
  } finally {
    await fs.promises.rm(tmp, { recursive: true, force: true });
  }
  printTable('eradio', records);
  console.log(`results: ${writeResults('eradio', records)}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
