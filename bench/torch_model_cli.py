"""What the whole-model reference scripts (torch_radio.py, torch_eradio.py, torch_teachers.py) share: their command line (reference
checkouts, checkpoint, images, outputs, device, dtype, threads, repeats, compile) and the timing loop that prints the
one JSON line the bench reads."""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse(description, references, extra=()):
    """extra: (flag, argparse keywords) pairs a script adds to the shared command line."""
    p = argparse.ArgumentParser(description=description)
    for k in references:
        p.add_argument(f'--{k}', required=True)
    p.add_argument('checkpoint')
    p.add_argument('io')
    p.add_argument('out')
    p.add_argument('--device', default='cpu')
    p.add_argument('--dtype', default='f32')
    p.add_argument('--threads', type=int, default=0)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--compile', action='store_true')
    for flag, kw in extra:
        p.add_argument(flag, **kw)
    cli = p.parse_args()
    sys.dont_write_bytecode = True
    sys.path.insert(0, os.path.join(HERE, '..', 'scripts', 'fixtures'))
    return cli


def time_and_report(torch, forward, repeats):
    """Runs forward once (warm-up, its result returned), then `repeats` timed runs; prints the median (and the
    minimum, the run least disturbed on a shared machine) as JSON."""
    out = forward()
    samples = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        forward()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    print(json.dumps({'ms': samples[len(samples) // 2], 'min_ms': samples[0], 'repeats': len(samples), 'torch': torch.__version__,
                      'threads': torch.get_num_threads()}))
    return out


def time_model(torch, cli, module, fn, x):
    """Times fn(x) (fn runs `module`; both already on cli.device) in cli.dtype, as time_and_report does, and returns
    the warm-up's output. bf16 is autocast on cuda, as PyTorch users run it; on cpu torch 1.13's autocast leaves
    LayerNorm mismatched (bf16 input, f32 weight), so there the module and x are cast to bf16 whole instead."""
    dev = x.device
    whole_bf16 = cli.dtype == 'bf16' and dev.type == 'cpu'
    if whole_bf16:
        module.to(torch.bfloat16)
        x = x.to(torch.bfloat16)
    run = torch.compile(fn) if cli.compile else fn
    amp = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cli.dtype == 'bf16' and not whole_bf16)

    def forward():
        with torch.no_grad(), amp:
            out = run(x)
        if dev.type == 'cuda':
            torch.cuda.synchronize()
        return out

    return time_and_report(torch, forward, cli.repeats)
