#!/usr/bin/python3
"""One RADIO distillation training step in PyTorch, for bench/train.ts to time beside ours on the same device.

The student is RADIO's computation written out in plain torch (spec §1, §4: input conditioner, patch embedding
without bias, the training CPE crop by grid_sample with position dropout, prefix tokens, timm pre-norm blocks with
exact GELU and LayerNorm eps 1e-6, MLP v2 adaptor heads with eps 1e-5), so it runs on any torch from Debian's 1.13
on, with neither timm nor the RADIO sources, which a GPU machine without network access may not have. Attention
is F.scaled_dot_product_attention where torch has it (what timm's fused_attn calls), written out otherwise.
`--verify FIXTURE_DIR` checks this port against test/fixtures/radio/train-b16-v2heads, a training step of the
NVlabs/RADIO code itself: outputs, loss terms and every gradient.

usage: torch_train.py CHECKPOINT CASE [--device cpu|cuda] [--dtype f32|bf16] [--compile] [--threads N]
  CHECKPOINT holds config.json + model.safetensors (the student); CASE holds io.safetensors (images, the CPE crop
  `cpe.scale`, `cpe.offset`, `cpe.keep`, the targets `teacher.<name>.summary|features`) and train.json (grids,
  loss weights, loss and AdamW settings, step counts). Prints one JSON object on stdout.
       torch_train.py --verify FIXTURE_DIR
"""
import argparse
import json
import os
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32}


def read_safetensors(path):
    """{key: tensor}. The safetensors package is not in Debian: the format is an 8-byte little-endian header
    length, a JSON header, then the raw little-endian tensors."""
    with open(path, "rb") as f:
        buf = bytearray(f.read())
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8 : 8 + n].decode("utf8"))
    out = {}
    for key, e in header.items():
        if key == "__metadata__":
            continue
        dt = ST_DTYPES[e["dtype"]]
        start, end = e["data_offsets"]
        count = (end - start) // torch.tensor([], dtype=dt).element_size()
        t = torch.frombuffer(buf, dtype=dt, count=count, offset=8 + n + start) if count else torch.empty(0, dtype=dt)
        out[key] = t.reshape(e["shape"]).clone()
    return out


class LayerNorm(nn.LayerNorm):
    """LayerNorm in f32 whatever its input, as CUDA autocast runs it (CPU autocast in torch 1.13 does not, and
    refuses a bf16 input with f32 weights). The identity in f32."""

    def forward(self, x):
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        if hasattr(F, "scaled_dot_product_attention"):
            o = F.scaled_dot_product_attention(q, k, v)
        else:  # torch < 2.0 (Debian's 1.13): timm's non-fused path
            o = (q * (D // self.heads) ** -0.5 @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(o.transpose(1, 2).reshape(B, T, D))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """timm's pre-norm Block without LayerScale (vit_base_patch16_224)."""

    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Mlp2(nn.Module):
    """RADIO's MLP v2 adaptor head: fc1, then x + Linear(GELU(LN(x))) per inner block, then LN, GELU, Linear."""

    def __init__(self, c):
        super().__init__()
        hd = c["hidden_dim"]
        self.fc1 = nn.Linear(c["input_dim"], hd)
        self.blocks = nn.ModuleList(nn.Sequential(LayerNorm(hd), nn.GELU(), nn.Linear(hd, hd)) for _ in range(c["num_inner"]))
        self.final = nn.Sequential(LayerNorm(hd), nn.GELU(), nn.Linear(hd, c["output_dim"]))

    def forward(self, x):
        x = self.fc1(x)
        for b in self.blocks:
            x = x + b(x)
        return self.final(x)


class Adaptor(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.head_mlp = Mlp2(c["summary"])
        self.feat_mlp = Mlp2(c["feature"])


class PatchGenerator(nn.Module):
    def __init__(self, dim, patch, grid, prefix):
        super().__init__()
        self.embedder = nn.Linear(3 * patch * patch, dim, bias=False)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, dim))
        self.cls_token = nn.Module()
        self.cls_token.token = nn.Parameter(torch.zeros(prefix, dim))


class ViT(nn.Module):
    def __init__(self, dim, depth, heads, patch, grid, prefix):
        super().__init__()
        self.patch_generator = PatchGenerator(dim, patch, grid, prefix)
        self.blocks = nn.ModuleList(Block(dim, heads, 4 * dim) for _ in range(depth))


class InputConditioner(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("norm_mean", torch.zeros(3, 1, 1))
        self.register_buffer("norm_std", torch.ones(3, 1, 1))


class RadioStudent(nn.Module):
    """RADIOModel in training mode; module names are the checkpoint's keys without `radio_model.`."""

    def __init__(self, config, weights):
        super().__init__()
        args = config["args"]
        kw = args["model_kwargs"]
        self.patch = config["patch_size"]
        dim = kw["embed_dim"]
        grid = round(weights["radio_model.model.patch_generator.pos_embed"].shape[1] ** 0.5)
        self.prefix = weights["radio_model.model.patch_generator.cls_token.token"].shape[0]
        self.grid = grid
        self.input_conditioner = InputConditioner()
        self.model = ViT(dim, kw["depth"], kw["num_heads"], self.patch, grid, self.prefix)
        self.adaptors = nn.ModuleDict({n: Adaptor(config["adaptor_configs"][n]) for n in config["adaptor_names"]})
        self.head_idx = {n: config["adaptor_configs"][n]["head_idx"] for n in config["adaptor_names"]}
        state = {k[len("radio_model.") :]: v for k, v in weights.items() if k != "radio_model.summary_idxs"}
        self.load_state_dict(state, strict=True)
        # RADIO gives a teacher without a summary (use_summary false: SAM) no summary loss, so its summary head
        # gets no gradient and AdamW leaves it alone; frozen here as in ours.
        for t in args["teachers"]:
            if t.get("use_summary", True) is False and t["name"] in self.adaptors:
                self.adaptors[t["name"]].head_mlp.requires_grad_(False)

    def forward(self, images, scale, offset, keep):
        B, _, H, W = images.shape
        P = self.patch
        gh, gw = H // P, W // P
        pg = self.model.patch_generator
        x = (images - self.input_conditioner.norm_mean) / self.input_conditioner.norm_std
        # Patches in (c, yy, xx) order, as RADIO's Im2Patches.
        x = x.reshape(B, 3, gh, P, gw, P).permute(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, 3 * P * P)
        x = pg.embedder(x)
        # The training CPE crop (spec §1.4): a per-sample window of the G x G table by grid_sample, align_corners
        # True, zero padding; position dropout zeroes a dropped sample's whole encoding.
        G = self.grid
        pe = pg.pos_embed.reshape(1, G, G, -1).permute(0, 3, 1, 2).float().expand(B, -1, -1, -1)
        gy, gx = torch.meshgrid(torch.linspace(0, 1, gh, device=x.device), torch.linspace(0, 1, gw, device=x.device), indexing="ij")
        lin = torch.stack([gx, gy], dim=-1).unsqueeze(0)
        grid = 2 * (lin * scale.reshape(B, 1, 1, 2) + offset.reshape(B, 1, 1, 2)) - 1
        pos = F.grid_sample(pe, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        pos = pos.flatten(2).transpose(1, 2).to(x.dtype)
        x = x + torch.where(keep.reshape(B, 1, 1) > 0, pos, torch.zeros_like(pos))
        x = torch.cat([pg.cls_token.token.unsqueeze(0).expand(B, -1, -1).to(x.dtype), x], dim=1)
        for blk in self.model.blocks:
            x = blk(x)
        features = x[:, self.prefix :]
        return {n: (a.head_mlp(x[:, self.head_idx[n]]), a.feat_mlp(features)) for n, a in self.adaptors.items()}


def resize_tokens(f, grid, size):
    if tuple(grid) == tuple(size):
        return f
    B, _, C = f.shape
    x = f.reshape(B, grid[0], grid[1], C).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1).reshape(B, size[0] * size[1], C)


def multi_teacher_loss(out, targets, case):
    """Spec §4.1 as ops.multiTeacherLoss computes it: Σ_t λ_t·mean(1 − cos) on summaries + γ_t·(α·mean(1 − cos)
    + β·smoothL1_δ) on features, both maps bilinearly resized to the larger grid. Returns (total, {term: value})."""
    loss = case["loss"]
    total = 0.0
    terms = {}
    for name, w in case["weights"].items():
        summary, features = out[name]
        z = targets.get(f"teacher.{name}.summary")
        if z is not None:
            ls = (1 - F.cosine_similarity(summary.float(), z, dim=-1)).mean()
            terms[f"{name}.summary"] = ls
            total = total + w["summary"] * ls
        sg, tg = case["student_grid"], case["teacher_grids"][name]
        size = (max(sg[0], tg[0]), max(sg[1], tg[1]))
        f = resize_tokens(features.float(), sg, size)
        g = resize_tokens(targets[f"teacher.{name}.features"], tg, size)
        if loss["mode"] == "mse":
            lf = F.mse_loss(f, g)
        else:
            cos = (1 - F.cosine_similarity(f, g, dim=-1)).mean()
            lf = loss["alpha"] * cos + loss["beta"] * F.smooth_l1_loss(f, g, beta=loss["delta"])
        terms[f"{name}.features"] = lf
        total = total + w["features"] * lf
    return total, terms


def relative_error(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def verify(fixture):
    """This port against the reference implementation's own training step (outputs, loss terms, gradients)."""
    config = json.load(open(os.path.join(fixture, "config.json")))
    case = json.load(open(os.path.join(fixture, "case.json")))
    io = read_safetensors(os.path.join(fixture, "io.safetensors"))
    model = RadioStudent(config, read_safetensors(os.path.join(fixture, "model.safetensors"))).train()
    out = model(io["images"], io["cpe.scale"], io["cpe.offset"], io["cpe.keep"])
    total, terms = multi_teacher_loss(out, io, case)
    total.backward()
    worst = {}
    for n, (s, f) in out.items():
        worst[f"student.{n}.summary"] = relative_error(s.detach(), io[f"student.{n}.summary"])
        worst[f"student.{n}.features"] = relative_error(f.detach(), io[f"student.{n}.features"])
    for k, v in terms.items():
        worst[f"loss.{k}"] = relative_error(v.detach().reshape(1), io[f"loss.{k}"])
    worst["loss.total"] = relative_error(total.detach().reshape(1), io["loss.total"])
    params = dict(model.named_parameters())
    grads = [k[len("grad.radio_model.") :] for k in io if k.startswith("grad.")]
    trainable = {k for k, p in params.items() if p.requires_grad}
    if trainable != set(grads):
        sys.exit(f"torch_train --verify: trainable parameters differ from the reference's: {sorted(trainable ^ set(grads))}")
    for k in grads:
        worst[f"grad.{k}"] = relative_error(params[k].grad, io[f"grad.radio_model.{k}"])
    key = max(worst, key=worst.get)
    print(json.dumps({"total": total.item(), "reference_total": case["total"], "worst": {key: worst[key]}, "grads": len(grads)}))
    return 0 if worst[key] < 1e-4 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("case", nargs="?")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the forward and loss (backward through AOTAutograd)")
    ap.add_argument("--threads", type=int, help="intra-op threads (bench/train.ts passes as many as our cpu backend runs)")
    ap.add_argument("--verify", metavar="FIXTURE_DIR")
    a = ap.parse_args()
    if a.verify:
        sys.exit(verify(a.verify))
    if not a.checkpoint or not a.case:
        ap.error("CHECKPOINT and CASE are required")
    dev = torch.device(a.device)
    # torch's default can be 1 thread (OpenMP under a CPU quota); the comparison needs the same number as ours.
    if a.threads:
        torch.set_num_threads(a.threads)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_train: torch sees no CUDA GPU")
    if a.compile and not hasattr(torch, "compile"):
        sys.exit(f"torch_train: torch {torch.__version__} has no torch.compile")
    config = json.load(open(os.path.join(a.checkpoint, "config.json")))
    case = json.load(open(os.path.join(a.case, "train.json")))
    io = {k: v.to(dev) for k, v in read_safetensors(os.path.join(a.case, "io.safetensors")).items()}
    model = RadioStudent(config, read_safetensors(os.path.join(a.checkpoint, "model.safetensors"))).to(dev).train()
    o = case["optim"]
    extra = {}
    # On a GPU the fused kernel is PyTorch's fastest AdamW (ours is one fused launch too); on cpu the default.
    if dev.type == "cuda" and "fused" in torch.optim.AdamW.__init__.__code__.co_varnames:
        extra["fused"] = True
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weightDecay"], **extra)
    images, scale, offset, keep = io["images"], io["cpe.scale"], io["cpe.offset"], io["cpe.keep"]
    # bf16 as PyTorch trains in it: autocast (matmuls in bf16, f32 weights, norms and softmax in f32).
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16")

    # Only the loss leaves the (compiled) function: nothing else needs the outputs materialized.
    def forward_loss(images, scale, offset, keep):
        with autocast:
            out = model(images, scale, offset, keep)
        return multi_teacher_loss(out, io, case)[0]

    fwd = torch.compile(forward_loss) if a.compile else forward_loss
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step():
        loss = fwd(images, scale, offset, keep)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    # The first steps start from the checkpoint's weights: their losses are compared with ours (the first checks
    # forward and loss, the second the gradients and AdamW update too). They are also the warm-up (and the compile).
    losses, warm_ms = [], []
    for _ in range(case["checkSteps"]):
        t0 = time.perf_counter()
        losses.append(step().item())
        warm_ms.append((time.perf_counter() - t0) * 1e3)
    samples = []
    for _ in range(case["steps"]):
        t0 = time.perf_counter()
        step()
        sync()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    result = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "dtype": a.dtype,
        "compiled": a.compile,
        "attention": "sdpa" if hasattr(F, "scaled_dot_product_attention") else "explicit",
        "adamw": "fused" if extra else "default",
        "batch": images.shape[0],
        "losses": losses,
        "warmupMs": warm_ms,
        "medianMs": samples[len(samples) // 2],
        "minMs": samples[0],
        "repeats": len(samples),
    }
    # Per phase, synchronizing between them (a separate pass: the syncs cost time). Not for compile: forward and
    # loss are one graph there.
    if not a.compile and case["breakdownSteps"] > 0:
        phases = {"forward": [], "loss": [], "backward": [], "optimizer": []}
        for _ in range(case["breakdownSteps"]):
            t = [time.perf_counter()]
            with autocast:
                out = model(images, scale, offset, keep)
            sync()
            t.append(time.perf_counter())
            loss = multi_teacher_loss(out, io, case)[0]
            sync()
            t.append(time.perf_counter())
            loss.backward()
            sync()
            t.append(time.perf_counter())
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync()
            t.append(time.perf_counter())
            for i, k in enumerate(phases):
                phases[k].append((t[i + 1] - t[i]) * 1e3)
            del out, loss
        result["phasesMs"] = {k: sorted(v)[len(v) // 2] for k, v in phases.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
