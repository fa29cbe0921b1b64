#!/usr/bin/python3
"""Times the reference RADIO ViT forward (NVlabs/RADIO's own code on timm and einops: input conditioner, CPE patch
generator with its cls/register prefix tokens, timm blocks, ViTDet windowing, the adaptor heads) on a checkpoint
folder that bench/radio.ts wrote, on the images it wrote, and writes every head's outputs back so the bench can
report the agreement as well as the speed ratio. This script contains none of the reference's code: it imports it.

usage: torch_radio.py --radio RADIO_DIR --timm TIMM_DIR --einops EINOPS_DIR CHECKPOINT IO OUT [--window N]
           [--device cpu|cuda] [--dtype f32|bf16] [--threads N] [--repeats N] [--compile]
  CHECKPOINT holds config.json + model.safetensors (the Hugging Face layout); IO holds `images` in [0, 1]; OUT
  receives `<head>.summary` and `<head>.features` for `backbone` and each adaptor. --window N runs ViTDet with N x N
  windows. Prints one JSON object on stdout: median ms, torch version, threads.

The model is the reference's Hugging Face class built from config.json and loaded strictly, as
`AutoModel.from_pretrained` does. That class only records the ViTDet window size; the windowing itself is what
hubconf.py adds (apply_vitdet_arch with the version's schedule), so it is applied here the same way.
"""
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_model_cli  # noqa: E402

CLI = torch_model_cli.parse(__doc__.split('\n\n')[0], ('radio', 'timm', 'einops'),
                            extra=(('--window', {'type': int, 'default': 0}),))
sys.path[:0] = [CLI.radio, CLI.timm, CLI.einops]

import warnings  # noqa: E402

import torch  # noqa: E402

from reference_hf import hf_radio_classes  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

RADIOConfig, RADIOModel = hf_radio_classes()
from radio.common import RESOURCE_MAP  # noqa: E402
from radio.vitdet import VitDetArgs, apply_vitdet_arch  # noqa: E402

warnings.filterwarnings('ignore')


def main():
    if CLI.threads > 0:
        torch.set_num_threads(CLI.threads)
    config = json.load(open(os.path.join(CLI.checkpoint, 'config.json')))
    if CLI.window:
        config['vitdet_window_size'] = CLI.window
    hf = RADIOModel(RADIOConfig(**config))
    hf.load_state_dict(read_safetensors(os.path.join(CLI.checkpoint, 'model.safetensors')), strict=True)
    radio = hf.radio_model
    if CLI.window:
        resource = RESOURCE_MAP[config['version']]
        apply_vitdet_arch(radio.model, VitDetArgs(CLI.window, radio.num_summary_tokens, num_windowed=resource.vitdet_num_windowed,
                                                  num_global=resource.vitdet_num_global))
    dev = torch.device(CLI.device)
    radio = radio.to(dev).eval()
    images = read_safetensors(CLI.io)['images'].to(dev)
    if CLI.dtype == 'bf16' and dev.type == 'cpu':
        # time_model casts the model to bf16 whole there; the conditioner casts its output to its `dtype`, which
        # hf_model.py sets to the model's.
        radio.input_conditioner.dtype = torch.bfloat16
    out = torch_model_cli.time_model(torch, CLI, radio, radio, images)
    if not isinstance(out, dict):
        out = {'backbone': out}
    write_safetensors(CLI.out, {f'{h}.{k}': getattr(o, k).float() for h, o in out.items() for k in ('summary', 'features')})


if __name__ == '__main__':
    main()
