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
import json
import os
import re
import sys
from argparse import Namespace

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_model_cli  # noqa: E402

CLI = torch_model_cli.parse(__doc__.split('\n\n')[0], ('radio', 'timm', 'einops'))
sys.path[:0] = [CLI.radio, CLI.timm, CLI.einops]

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
    out = torch_model_cli.time_model(torch, CLI, radio, radio, images)
    write_safetensors(CLI.out, {'backbone.summary': out.summary.float(), 'backbone.features': out.features.float()})


if __name__ == '__main__':
    main()
