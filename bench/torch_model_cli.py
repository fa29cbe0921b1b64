"""What the whole-model reference scripts (torch_eradio.py, torch_teachers.py) share: their command line (reference
checkouts, checkpoint, images, outputs, device, dtype, threads, repeats, compile) and the timing loop that prints the
one JSON line the bench reads."""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse(description, references):
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
    cli = p.parse_args()
    sys.dont_write_bytecode = True
    sys.path.insert(0, os.path.join(HERE, '..', 'scripts', 'fixtures'))
    return cli


def time_and_report(torch, forward, repeats):
    """Runs forward once (warm-up, its result returned), then `repeats` timed runs; prints the median as JSON."""
    out = forward()
    samples = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        forward()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    print(json.dumps({'ms': samples[len(samples) // 2], 'torch': torch.__version__, 'threads': torch.get_num_threads()}))
    return out
