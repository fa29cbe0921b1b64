#!/usr/bin/python3
"""Times a teacher's original implementation (facebookresearch/dinov2, openai/CLIP, SigLIP through timm, facebookresearch/segment-anything) on the
config that bench/teachers.ts wrote, after writing that model's random weights into the folder in transformers'
layout (scripts/fixtures/teacher_layouts.py), so the bench loads exactly the weights timed here. Writes the
outputs back for the agreement check. This script contains none of the references' code: it imports them.

usage: torch_teachers.py --dinov2 DIR --clip DIR --timm DIR --sam DIR CHECKPOINT IO OUT [--device cpu|cuda] [--dtype f32|bf16]
           [--threads N] [--repeats N] [--compile]
  CHECKPOINT holds config.json (+ preprocessor_config.json); model.safetensors is written there. IO holds `images`
  in [0, 1]; OUT receives `summary` (SAM: the neck's output) and `features`. Prints one JSON object on stdout: median ms, torch version,
  threads.
"""
import importlib.util
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_model_cli  # noqa: E402

CLI = torch_model_cli.parse(__doc__.split('\n\n')[0], ('dinov2', 'clip', 'timm', 'sam'))
sys.path[:0] = [CLI.dinov2, CLI.timm, CLI.sam]

import warnings  # noqa: E402

import torch  # noqa: E402

warnings.filterwarnings('ignore')
from dinov2.models.vision_transformer import DinoVisionTransformer  # noqa: E402
from timm.models.vision_transformer import VisionTransformer as TimmViT  # noqa: E402
from segment_anything.modeling.image_encoder import ImageEncoderViT  # noqa: E402

from safetensors_io import read_safetensors, write_safetensors  # noqa: E402
from teacher_layouts import build_dinov2, build_sam, build_siglip, clip_to_hf, dinov2_to_hf, sam_to_hf, siglip_to_hf  # noqa: E402

_spec = importlib.util.spec_from_file_location('openai_clip_model', os.path.join(CLI.clip, 'clip', 'model.py'))
clip_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(clip_model)


def build(config):
    """The original model for a transformers config, random-init, and its weights in transformers' layout."""
    t = config['model_type']
    c = config.get('vision_config', config)
    dim, depth, heads, patch, image = c['hidden_size'], c['num_hidden_layers'], c['num_attention_heads'], c['patch_size'], c['image_size']
    if t.startswith('dinov2'):
        m = build_dinov2(DinoVisionTransformer, image=image, patch=patch, dim=dim, depth=depth, heads=heads,
                         registers=c.get('num_register_tokens', 0) if t == 'dinov2_with_registers' else 0,
                         swiglu=c.get('use_swiglu_ffn', False), mlp_ratio=c.get('mlp_ratio', 4))
        return m, dinov2_to_hf(m, dim), lambda x: (lambda o: (o['x_norm_clstoken'], o['x_norm_patchtokens']))(m.forward_features(x))
    if t.startswith('sam'):
        m = build_sam(ImageEncoderViT, image=image, patch=patch, dim=dim, depth=depth, heads=heads, window=c['window_size'],
                      global_blocks=c['global_attn_indexes'], out_chans=c['output_channels'])
        hidden = {}
        m.blocks[-1].register_forward_hook(lambda mod, inp, out: hidden.__setitem__('x', out))

        def run(x):
            neck = m(x)
            return neck, hidden['x'].reshape(x.shape[0], -1, dim)
        return m, sam_to_hf(m), run
    if t.startswith('clip'):
        if c['intermediate_size'] != 4 * dim:
            sys.exit('torch_teachers: OpenAI CLIP has a 4x MLP; this config does not')
        m = clip_model.VisionTransformer(input_resolution=image, patch_size=patch, width=dim, layers=depth, heads=heads,
                                         output_dim=c.get('projection_dim', config.get('projection_dim', 512))).eval()
        hidden = {}
        m.transformer.register_forward_hook(lambda mod, inp, out: hidden.__setitem__('x', out))

        def run(x):
            s = m(x)
            return s, hidden['x'].permute(1, 0, 2)[:, 1:]
        return m, clip_to_hf(m, dim, depth), run
    m = build_siglip(TimmViT, image=image, patch=patch, dim=dim, depth=depth, heads=heads,
                     mlp_ratio=(c['intermediate_size'] + 0.5) / dim)

    def run(x):
        f = m.forward_features(x)
        return m.forward_head(f, pre_logits=True), f
    return m, siglip_to_hf(m, dim, depth), run


def main():
    if CLI.threads > 0:
        torch.set_num_threads(CLI.threads)
    config = json.load(open(os.path.join(CLI.checkpoint, 'config.json')))
    pre = json.load(open(os.path.join(CLI.checkpoint, 'preprocessor_config.json')))
    torch.manual_seed(0)
    model, hf, run = build(config)
    write_safetensors(os.path.join(CLI.checkpoint, 'model.safetensors'), hf)
    del hf
    dev = torch.device(CLI.device)
    model = model.to(dev)
    images = read_safetensors(CLI.io)['images'].to(dev)
    mean = torch.tensor(pre['image_mean'], device=dev).view(1, 3, 1, 1)
    std = torch.tensor(pre['image_std'], device=dev).view(1, 3, 1, 1)
    x = (images - mean) / std
    out = torch_model_cli.time_model(torch, CLI, model, run, x)
    write_safetensors(CLI.out, {'summary': out[0].float(), 'features': out[1].float()})


if __name__ == '__main__':
    main()
