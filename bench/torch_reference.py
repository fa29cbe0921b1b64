#!/usr/bin/env python3
"""Times in PyTorch, on the same GPU, the computations our benchmarks ran (their records' `torch` specs), and
measures the device ceilings: copy bandwidth and bf16 GEMM throughput.

usage: torch_reference.py RESULTS_DIR OUT_JSON   (RESULTS_DIR holds the benches' JSON files)
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def timed(fn, repeats=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1e3)
    samples.sort()
    return samples[len(samples) // 2]


def case_fn(fn, a, dev):
    dt = DTYPES.get(a.get("dtype", "f32"), torch.float32)
    if fn == "linear":
        x = torch.randn(a["m"], a["k"], device=dev, dtype=dt)
        w = torch.randn(a["n"], a["k"], device=dev, dtype=dt)
        return lambda: F.linear(x, w)
    if fn == "conv2d":
        x = torch.randn(a["batch"], a["c"], a["h"], a["h"], device=dev, dtype=dt)
        w = torch.randn(a["o"], a["c"] // a["groups"], a["k"], a["k"], device=dev, dtype=dt)
        b = torch.randn(a["o"], device=dev, dtype=dt)
        return lambda: F.silu(F.conv2d(x, w, b, stride=a["stride"], padding=a["padding"], groups=a["groups"]))
    if fn in ("conv2d_backward_input", "conv2d_backward_weight"):
        # The two products of conv2d's backward alone, as torch.nn.grad exposes them (cuDNN's dgrad and wgrad).
        x = torch.randn(a["batch"], a["c"], a["h"], a["h"], device=dev, dtype=dt)
        w = torch.randn(a["o"], a["c"] // a["groups"], a["k"], a["k"], device=dev, dtype=dt)
        g = torch.randn_like(F.conv2d(x, w, stride=a["stride"], padding=a["padding"], groups=a["groups"]))
        conv = dict(stride=a["stride"], padding=a["padding"], groups=a["groups"])
        if fn == "conv2d_backward_input":
            return lambda: torch.nn.grad.conv2d_input(x.shape, w, g, **conv)
        return lambda: torch.nn.grad.conv2d_weight(x, w.shape, g, **conv)
    if fn == "add":
        x = torch.randn(a["n"], device=dev, dtype=dt)
        y = torch.randn(a["n"], device=dev, dtype=dt)
        return lambda: x + y
    if fn == "sum":
        x = torch.randn(a["n"], device=dev, dtype=dt)
        return lambda: x.sum()
    if fn == "randn":
        return lambda: torch.randn(a["n"], device=dev, dtype=dt)
    if fn == "layer_norm":
        x = torch.randn(a["rows"], a["cols"], device=dev, dtype=dt)
        w = torch.randn(a["cols"], device=dev, dtype=dt)
        b = torch.randn(a["cols"], device=dev, dtype=dt)
        return lambda: F.layer_norm(x, (a["cols"],), w, b, 1e-6)
    if fn == "gelu":
        x = torch.randn(a["n"], device=dev, dtype=dt)
        return lambda: F.gelu(x)
    if fn.startswith("batch_norm") or fn.startswith("layer_norm2d"):
        return norm2d_fn(fn, a, dev, dt)
    if fn == "sdpa":
        # Windows as batch: [B·windows, heads, L, headDim], as PyTorch runs ViTDet window attention.
        shape = (a["batch"] * a["windows"], a["heads"], a["length"], a["headDim"])
        need = bool(a.get("backward", False))
        q, k, v = (torch.randn(*shape, device=dev, dtype=dt, requires_grad=need) for _ in range(3))
        if not need:
            return lambda: F.scaled_dot_product_attention(q, k, v)
        g = torch.randn(*shape, device=dev, dtype=dt)
        return lambda: torch.autograd.grad(F.scaled_dot_product_attention(q, k, v), (q, k, v), g)
    return None


def layer_norm2d(x, w, b, eps=1e-6):
    """SAM's LayerNorm2d: mean and biased variance over the channels of each pixel."""
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    return (x - u) / torch.sqrt(s + eps) * w[:, None, None] + b[:, None, None]


def norm2d_fn(fn, a, dev, dt):
    """bench/batchnorm.ts's cases: NCHW x in dt, f32 parameters and running stats (mixed precision)."""
    c = a["c"]
    need = fn.endswith("backward")
    x = torch.randn(a["n"], c, a["h"], a["w"], device=dev, dtype=dt, requires_grad=need)
    w = torch.ones(c, device=dev, requires_grad=need)
    b = torch.zeros(c, device=dev, requires_grad=need)
    rm, rv = torch.zeros(c, device=dev), torch.ones(c, device=dev)
    if fn.startswith("layer_norm2d"):
        # PyTorch has no fused LayerNorm2d: what SAM runs, in f32 for bf16 input as autocast would.
        run = lambda: layer_norm2d(x.float(), w, b).to(dt)
    else:
        run = lambda: F.batch_norm(x, rm, rv, w, b, training=fn != "batch_norm_eval", momentum=0.1, eps=1e-5)
    if not need:
        return run
    g = torch.randn_like(x)
    return lambda: torch.autograd.grad(run(), (x, w, b), g)


def ceilings(dev):
    n = 1 << 28  # 1 GiB of f32
    src = torch.empty(n, device=dev)
    dst = torch.empty(n, device=dev)
    copy_ms = timed(lambda: dst.copy_(src), repeats=10)
    m = 8192
    a = torch.randn(m, m, device=dev, dtype=torch.bfloat16)
    b = torch.randn(m, m, device=dev, dtype=torch.bfloat16)
    gemm_ms = timed(lambda: a @ b, repeats=10)
    return {"copy_bandwidth": 2 * 4 * n / (copy_ms * 1e-3), "bf16_gemm_flops": 2 * m**3 / (gemm_ms * 1e-3)}


def main():
    results_dir, out = sys.argv[1], sys.argv[2]
    if not torch.cuda.is_available():
        sys.exit("torch_reference: torch sees no CUDA GPU")
    dev = torch.device("cuda")
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "ceilings": ceilings(dev), "cases": []}
    for name in sorted(os.listdir(results_dir)):
        if not name.endswith(".json") or name in ("torch.json", "jest.json"):
            continue
        for rec in json.load(open(os.path.join(results_dir, name))).get("records", []):
            spec = rec.get("torch")
            if rec.get("backend") != "cuda" or not spec:
                continue
            fn = case_fn(spec["fn"], spec["args"], dev)
            if fn is None:
                continue
            entry = {"op": rec["op"], "shape": rec["shape"], "dtype": rec["dtype"], "eager_ms": timed(fn)}
            try:
                entry["compiled_ms"] = timed(torch.compile(fn))
            except Exception as e:  # torch.compile needs a working toolchain on the GPU machine
                entry["compile_error"] = str(e).splitlines()[0][:200]
            report["cases"].append(entry)
    json.dump(report, open(out, "w"), indent=2)
    print(f"torch_reference: {len(report['cases'])} cases on {report['device']}")


if __name__ == "__main__":
    main()
