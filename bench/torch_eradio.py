#!/usr/bin/python3
"""Times the reference E-RADIO forward (NVlabs/RADIO's own code on timm and einops) on a checkpoint folder that
bench/eradio.ts wrote, on the images it wrote, and writes the backbone outputs back so the bench can report the
agreement as well as the speed ratio. This script contains none of the reference's code: it imports it.

usage: torch_eradio.py --radio RADIO_DIR --timm TIMM_DIR --einops EINOPS_DIR CHECKPOINT IO OUT
           [--device cpu|cuda] [--dtype f32|bf16] [--threads N] [--repeats N] [--compile]
  CHECKPOINT holds config.json + model.safetensors (no adaptor heads); IO holds `images`; OUT receives
  `backbone.summary` and `backbone.features`. Prints one JSON object on stdout: median ms, torch version, threads.

The checkpoint has no derived buffers (BatchNorm's num_batches_tracked, the CPB's coordinate table, index and cached
bias, the unused final BatchNorm): the reference's constructor computes them, so they are the only keys a
non-strict load may leave missing, which is checked.
"""
import argparse
import json
import os
import re
import sys
import time
from argparse import Namespace

p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
for k in ('radio', 'timm', 'einops'):
    p.add_argument(f'--{k}', required=True)
p.add_argument('checkpoint')
p.add_argument('io')
p.add_argument('out')
p.add_argument('--device', default='cpu')
p.add_argument('--dtype', default='f32')
p.add_argument('--threads', type=int, default=0)
p.add_argument('--repeats', type=int, default=3)
p.add_argument('--compile', action='store_true')
CLI = p.parse_args()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [CLI.radio, CLI.timm, CLI.einops, os.path.join(HERE, '..', 'scripts', 'fixtures')]
sys.dont_write_bytecode = True

import warnings  # noqa: E402

import torch  # noqa: E402

from radio import eradio_model  # noqa: E402,F401  (registers the eradio* timm names)
from radio.input_conditioner import get_default_conditioner  # noqa: E402
from radio.radio_model import RADIOModel, create_model_from_args  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

warnings.filterwarnings('ignore')
DERIVED = re.compile(r'(\.num_batches_tracked|\.relative_coords_table|\.relative_position_index|\.relative_bias)$|^model\.norm\.')


def main():
    if CLI.threads > 0:
        torch.set_num_threads(CLI.threads)
    config = json.load(open(os.path.join(CLI.checkpoint, 'config.json')))
    model = create_model_from_args(Namespace(**config['args']))
    radio = RADIOModel(model, get_default_conditioner(), patch_size=config['patch_size'], max_resolution=config['max_resolution'],
                       preferred_resolution=tuple(config['preferred_resolution']), adaptors={})
    if config.get('eradio_window_size'):
        model.change_window_size(config['eradio_window_size'])
    state = {k[len('radio_model.'):] if k.startswith('radio_model.') else k: v for k, v in read_safetensors(os.path.join(CLI.checkpoint, 'model.safetensors')).items()}
    missing, unexpected = radio.load_state_dict(state, strict=False)
    bad = [k for k in missing if not DERIVED.search(k)]
    if unexpected or bad:
        sys.exit(f'torch_eradio: the checkpoint does not fit the reference: unexpected {unexpected[:5]}, missing {bad[:5]}')
    dev = torch.device(CLI.device)
    radio = radio.to(dev).eval()
    images = read_safetensors(CLI.io)['images'].to(dev)
    # bf16: autocast on cuda, as PyTorch users run it; on cpu torch 1.13's autocast leaves E-RADIO's LayerNorm
    # mismatched (bf16 input, f32 weight), so the model is cast to bf16 whole instead.
    whole_bf16 = CLI.dtype == 'bf16' and dev.type == 'cpu'
    if whole_bf16:
        radio = radio.to(torch.bfloat16)
        images = images.to(torch.bfloat16)
    run = radio
    if CLI.compile:
        run = torch.compile(radio)
    amp = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=CLI.dtype == 'bf16' and not whole_bf16)

    def forward():
        with torch.no_grad(), amp:
            out = run(images)
        if dev.type == 'cuda':
            torch.cuda.synchronize()
        return out

    out = forward()
    samples = []
    for _ in range(CLI.repeats):
        t0 = time.perf_counter()
        forward()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    write_safetensors(CLI.out, {'backbone.summary': out.summary.float(), 'backbone.features': out.features.float()})
    print(json.dumps({'ms': samples[len(samples) // 2], 'torch': torch.__version__, 'threads': torch.get_num_threads()}))


if __name__ == '__main__':
    main()
