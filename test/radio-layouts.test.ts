// RadioModel.load on the checkpoint layouts of the released models, each against a case the reference
// implementation made and ran (scripts/fixtures/make_radio_cases.py; test/fixtures/radio/README.md): an MLP v2
// feature head with upsample_factor 2, the attention feature head (AttnFDHead), BF16- and F16-stored weights, a
// feature normalizer together with adaptor heads plus an unused inter-feature normalizer and a summary_idxs buffer
// of its own; then what load warns about (tensors no module reads) and refuses (missing tensors, radio_v2.5-g).
import * as fs from 'fs';
import * as path from 'path';

import { RadioModel, tensor } from '../ts';
import type { Device, DType, SafetensorsWriteEntry } from '../ts';
import { writeCheckpoint } from './support/radio-checkpoint';
import { expectWithin, RADIO_FIXTURES as ROOT, readEntries, readIo, useTmpDir } from './support/radio-fixtures';
import { describeEachDevice, poisonOutputs, relativeError } from './support/reference';

poisonOutputs();

// The bounds of test/radio-cases.test.ts: f32 is the design's whole-model bound; bf16 rounds every weight and
// activation to 8 significant bits, ~1e-2 over a model, while a real mistake shows as O(1).
const TOLERANCE: Record<'f32' | 'bf16', number> = { f32: 1e-4, bf16: 2e-2 };

interface CaseJson {
  cpe_mode: boolean;
  image_hw: [number, number];
  batch: number;
  summary_idxs?: number[];
}

const readCase = (name: string): CaseJson => JSON.parse(fs.readFileSync(path.join(ROOT, name, 'case.json'), 'utf8'));

/** Whether the attention op takes this head dim (AttnFDHead's is width / 16, 8 in the fixture). */
/** Loads a case, runs its images, and checks every head the reference returned, summary and features. */
async function parity(name: string, device: Device, dtype: DType, warnings: string[] = []): Promise<RadioModel> {
  const c = readCase(name);
  const model = await RadioModel.load(path.join(ROOT, name), { device, dtype, onWarning: (m) => warnings.push(m) });
  expect(model.config.cpeMode).toBe(c.cpe_mode);
  const io = await readIo(path.join(ROOT, name, 'io.safetensors'));
  const heads = [...io.keys()].filter((k) => k.endsWith('.summary')).map((k) => k.slice(0, -'.summary'.length));
  const images = io.get('images')!;
  expect(images.shape).toEqual([c.batch, 3, ...c.image_hw]);
  const out = model.forward(tensor(images.data, images.shape, { device }));
  expect(Object.keys(out).sort()).toEqual([...heads].sort());
  let worst = { err: 0, at: '' };
  for (const h of heads)
    for (const part of ['summary', 'features'] as const) {
      const ref = io.get(`${h}.${part}`)!;
      expect({ at: `${h}.${part}`, shape: out[h][part].shape }).toEqual({ at: `${h}.${part}`, shape: ref.shape });
      const err = relativeError(await out[h][part].toArray(), ref.data);
      if (err > worst.err) worst = { err, at: `${h}.${part}` };
      expectWithin(`${h}.${part}`, err, TOLERANCE[dtype as 'f32' | 'bf16']);
    }
  for (const h of Object.values(out)) for (const t of [h.summary, h.features]) t.dispose();
  console.log(`${name} ${device} ${dtype}: worst relative error ${worst.err.toExponential(2)} (${worst.at})`);
  return model;
}

const DTYPES = ['f32', 'bf16'] as const;

describeEachDevice('released checkpoint layouts against the reference, on %s', (device: Device) => {
  test.each(DTYPES)('upsample_factor 2 feature head (pixel-shuffled to the 2x finer grid), next to a plain head: %s', async (dtype) => {
    const model = await parity('vit-upsample2', device, dtype);
    expect(model.config.adaptors.map((a) => [a.name, a.feature.upsampleFactor])).toEqual([['clip', 2], ['dino_v2', 1]]);
    // The grid a loss aligns each head's features on (64x96 images, patch 16).
    expect(['backbone', 'clip', 'dino_v2'].map((h) => model.featureGrid(h, 64, 96))).toEqual([[4, 6], [8, 12], [4, 6]]);
    expect(() => model.featureGrid('sam', 64, 96)).toThrow('RadioModel.featureGrid: no head "sam" (heads: backbone, clip, dino_v2)');
    model.dispose();
  });

  // AttnFDHead's 16 heads make the fixture's head dim 8 (width 128; head dim 32 would take a 25 MB fixture).
  test.each(DTYPES)('attention feature head (AttnFDHead): %s', async (dtype) => {
    const model = await parity('vit-attn-head', device, dtype);
    model.dispose();
  });

  test.each(DTYPES)('BF16-stored backbone with F32 adaptors, and all-F16 weights: %s', async (dtype) => {
    for (const name of ['vit-bf16-stored', 'vit-f16-stored']) {
      const warnings: string[] = [];
      (await parity(name, device, dtype, warnings)).dispose();
      // timm's reg_token is in both and never read by RADIO: not worth a warning.
      expect(warnings).toEqual([]);
    }
  });

  test.each(DTYPES)('feature normalizer with adaptor heads, summary_idxs from the buffer, inter_feature_normalizer ignored: %s', async (dtype) => {
    const warnings: string[] = [];
    const model = await parity('vit-norm-heads', device, dtype, warnings);
    // The teachers list would give [0, 1, 2] and a 3·64-wide backbone summary.
    expect(readCase('vit-norm-heads').summary_idxs).toEqual([0, 2]);
    expect(model.config.defaultSummaryIdxs).toEqual([0, 1, 2]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /model\.safetensors: the inter_feature_normalizer \('radio_model\.inter_feature_normalizer\.alphas', 'radio_model\.inter_feature_normalizer\.rotation', 'radio_model\.inter_feature_normalizer\.means'\) is ignored: it normalizes intermediate-layer features/,
    );
    model.dispose();
  });
});

describe('what RadioModel.load warns about and refuses (cpu)', () => {
  const SRC = path.join(ROOT, 'vit-upsample2');
  const tmp = useTmpDir('am-radio-layouts-');

  /** SRC's tensors with edit applied, under SRC's config with editConfig applied. */
  async function variant(name: string, edit: (e: Record<string, SafetensorsWriteEntry>) => void, editConfig: (c: Record<string, unknown>) => void = () => undefined): Promise<string> {
    const entries = await readEntries(path.join(SRC, 'model.safetensors'));
    edit(entries);
    const config = JSON.parse(await fs.promises.readFile(path.join(SRC, 'config.json'), 'utf8'));
    editConfig(config);
    const dir = path.join(tmp.dir(), name);
    await writeCheckpoint(dir, config, entries);
    return dir;
  }

  test('tensors no module reads: loaded anyway, with one warning listing them all', async () => {
    const dir = await variant('extra', (e) => {
      e['radio_model.model.blocks.0.attn.q_norm.weight'] = { dtype: 'F32', shape: [32], data: new Float32Array(32) };
      e['radio_model.adaptors.clip.extra.bias'] = { dtype: 'F32', shape: [4], data: new Float32Array(4) };
      e['radio_model.something_else'] = { dtype: 'F32', shape: [1], data: [1] };
    });
    const warnings: string[] = [];
    const model = await RadioModel.load(dir, { onWarning: (m) => warnings.push(m) });
    expect(warnings).toEqual([
      `${path.join(dir, 'model.safetensors')}: 3 tensors that no module reads, ignored: 'radio_model.adaptors.clip.extra.bias', 'radio_model.model.blocks.0.attn.q_norm.weight', 'radio_model.something_else'`,
    ]);
    model.dispose();
    // Without onWarning it is a process warning of its own type.
    const emitted = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      (await RadioModel.load(dir)).dispose();
      expect(emitted).toHaveBeenCalledTimes(1);
      expect(emitted.mock.calls[0][0]).toMatch(/3 tensors that no module reads, ignored: /);
      expect(emitted.mock.calls[0][1]).toBe('RadioCheckpointWarning');
    } finally {
      emitted.mockRestore();
    }
  });

  test('missing tensors: one Error naming the file and every one of them', async () => {
    // Two deleted, and the two buffers of a feature normalizer the config asks for.
    const dir = await variant('missing', (e) => {
      delete e['radio_model.model.blocks.1.attn.qkv.bias'];
      delete e['radio_model.adaptors.clip.feat_mlp.final.2.weight'];
    }, (c) => (c.feature_normalizer_config = { embed_dim: 64 }));
    await expect(RadioModel.load(dir)).rejects.toThrow(
      `${path.join(dir, 'model.safetensors')}: missing 4 tensors: 'radio_model.model.blocks.1.attn.qkv.bias', 'radio_model.adaptors.clip.feat_mlp.final.2.weight', 'radio_model.feature_normalizer.mean', 'radio_model.feature_normalizer.tx'`,
    );
  });

  test('an upsampling head whose output_dim is not C·u², or that is not MLP v2: an Error naming the field', async () => {
    const odd = await variant('odd-upsample', () => undefined, (c) => ((c.adaptor_configs as any).clip.feature.upsample_factor = 3));
    await expect(RadioModel.load(odd)).rejects.toThrow(/config\.json: adaptor_configs\.clip\.feature\.output_dim 96 is not a multiple of upsample_factor² 9/);
    const summary = await variant('summary-upsample', () => undefined, (c) => ((c.adaptor_configs as any).clip.summary.upsample_factor = 2));
    await expect(RadioModel.load(summary)).rejects.toThrow(/adaptor_configs\.clip\.summary\.upsample_factor 2: RADIO does not upsample summary heads/);
    const attn = await variant('attn-upsample', () => undefined, (c) => ((c.args as any).spatial_mlp_version = 'attn'));
    await expect(RadioModel.load(attn)).rejects.toThrow(/adaptor_configs\.clip\.feature\.upsample_factor 2: only MLP v2 feature heads upsample \(this head is attn\)/);
  });

  test('MLP v2 keys under an attn config, and attn keys under a v2 config: an Error naming both', async () => {
    const attnKeys = path.join(ROOT, 'vit-attn-head');
    const dir = path.join(tmp.dir(), 'attn-as-v2');
    await fs.promises.mkdir(dir);
    const config = JSON.parse(await fs.promises.readFile(path.join(attnKeys, 'config.json'), 'utf8'));
    delete config.args.spatial_mlp_version;
    await fs.promises.writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
    await fs.promises.copyFile(path.join(attnKeys, 'model.safetensors'), path.join(dir, 'model.safetensors'));
    await expect(RadioModel.load(dir)).rejects.toThrow(
      /adaptor head 'radio_model\.adaptors\.dino_v2\.feat_mlp' has attention-head keys \(blocks\.\{0,1\}, mlp\), but config\.json args\.spatial_mlp_version \(or args\.mlp_version\) makes it v2/,
    );
    const v2AsAttn = await variant('v2-as-attn', () => undefined, (c) => {
      (c.args as any).spatial_mlp_version = 'attn';
      delete (c.adaptor_configs as any).clip.feature.upsample_factor;
    });
    await expect(RadioModel.load(v2AsAttn)).rejects.toThrow(/adaptor head 'radio_model\.adaptors\.clip\.feat_mlp' has MLP v2 keys \(fc1, blocks, final\), but config\.json .* makes it attn/);
  });

  test('radio_v2.5-g (DINOv2 architecture): an Error naming it, from its config or from its keys', async () => {
    const byConfig = await variant('v2.5-g', () => undefined, (c) => {
      c.version = 'radio_v2.5-g';
      (c.args as any).model = 'dino_v2_g_student';
    });
    await expect(RadioModel.load(byConfig)).rejects.toThrow(
      /config\.json: "radio_v2\.5-g" \(args\.model "dino_v2_g_student"\) is radio_v2\.5-g's DINOv2 architecture \(DinoWrapper, keys model\.inner\.\*\), which this port does not support yet/,
    );
    const byKeys = await variant('dino-keys', (e) => {
      e['radio_model.model.inner.blocks.0.norm1.weight'] = { dtype: 'F32', shape: [64], data: new Float32Array(64) };
    });
    await expect(RadioModel.load(byKeys)).rejects.toThrow(/model\.safetensors: the keys model\.inner\.\* are radio_v2\.5-g's DINOv2 architecture \(DinoWrapper\), which this port does not support yet/);
  });

  test('E-RADIO: an Error naming the loader that takes it', async () => {
    const eradio = await variant('eradio', () => undefined, (c) => {
      (c.args as any).model = 'eradio_xxxtiny';
    });
    await expect(RadioModel.load(eradio)).rejects.toThrow(/config\.json: an E-RADIO checkpoint \(args\.model "eradio_xxxtiny"\); load it with ERadioModel\.load\(dir\) or loadRadio\(dir\)/);
  });
});
