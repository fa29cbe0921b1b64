#!/usr/bin/python3
"""PyTorch on bench/interpolate.ts's shapes, the way RADIO's code calls it (token maps go through a permuted,
channels-last view; CPE eval resizes then crops; CPE train builds the grid and calls grid_sample).
Reads {"device", "dtypes", "shapes"} as JSON on stdin and prints one JSON list of bench records."""
import json
import sys
import time

import torch
import torch.nn.functional as F


def timeit(fn, sync, warmup=2, min_repeats=5, min_time=0.3):
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    start = time.perf_counter()
    while len(samples) < min_repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1e3)
        if len(samples) >= 1000:
            break
    samples.sort()
    return samples[len(samples) // 2], samples[0], len(samples)


def make_op(s, device):
    """The op as a function of its input, and the input's shape."""
    B, C, n, m = s['batch'], s['channels'], s['from'], s['to']
    if s['op'] == 'cpe':
        def cpe(pe):
            x = pe.reshape(1, n, n, C).permute(0, 3, 1, 2)
            x = F.interpolate(x, size=(m, m), mode='bilinear', align_corners=False)[..., :m, :m]
            return x.flatten(2).transpose(1, 2)
        return cpe, (1, n * n, C)
    if s['op'] == 'cpeTrain':
        scale = torch.rand(B, 1, 1, 2, device=device)
        offset = torch.rand(B, 1, 1, 2, device=device) * 0.3
        keep = torch.ones(B, 1, 1, device=device, dtype=torch.bool)

        def cpe_train(pe):
            x = pe.reshape(1, n, n, C).permute(0, 3, 1, 2).expand(B, -1, -1, -1)
            lin = torch.linspace(0, 1, m, device=device)
            gy, gx = torch.meshgrid(lin, lin, indexing='ij')
            grid = 2 * (torch.stack([gx, gy], dim=-1).unsqueeze(0) * scale + offset) - 1
            y = F.grid_sample(x, grid.to(x.dtype), mode='bilinear', padding_mode='zeros', align_corners=True)
            y = y.flatten(2).transpose(1, 2)
            return torch.where(keep, y, torch.zeros_like(y))
        return cpe_train, (1, n * n, C)
    # The teachers' position embeddings are resized bicubically (DINOv2 with registers also antialiased).
    kw = {'size': (m, m), 'mode': s.get('mode') or 'bilinear', 'align_corners': False,
          'antialias': bool(s.get('antialias'))}
    if s['layout'] == 'NLC':
        def tokens(x):
            nchw = x.reshape(B, n, n, C).permute(0, 3, 1, 2)
            y = F.interpolate(nchw, **kw)
            return y.permute(0, 2, 3, 1).reshape(B, m * m, C)
        return tokens, (B, n * n, C)
    return (lambda x: F.interpolate(x, **kw)), (B, C, n, n)


def main():
    req = json.load(sys.stdin)
    device = req['device']
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    records = []
    for dtype_name in req['dtypes']:
        dtype = torch.bfloat16 if dtype_name == 'bf16' else torch.float32
        size = 2 if dtype_name == 'bf16' else 4
        for s in req['shapes']:
            fn, shape = make_op(s, device)
            base = {'shape': s['label'], 'dtype': dtype_name, 'backend': f'torch-{device}'}
            op = f"{s['op']} {s['layout']}"
            try:
                x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
                y = fn(x)
                g = torch.randn_like(y)
                bytes_ = (x.numel() + y.numel()) * size
                with torch.no_grad():
                    fwd = timeit(lambda: fn(x), sync)
                bwd = timeit(lambda: torch.autograd.grad(y, x, g, retain_graph=True), sync)
            except (RuntimeError, NotImplementedError) as e:
                records.append({**base, 'op': op, 'medianMs': 0, 'minMs': 0, 'repeats': 0,
                                'note': f'not supported: {str(e).splitlines()[0][:60]}'})
                continue
            for name, (med, lo, n) in ((op, fwd), (f'{op} backward', bwd)):
                records.append({**base, 'op': name, 'bytes': bytes_, 'medianMs': med, 'minMs': lo, 'repeats': n,
                                'gbPerS': bytes_ / (med * 1e-3) / 1e9})
            del x, y, g
    json.dump(records, sys.stdout)


if __name__ == '__main__':
    main()
