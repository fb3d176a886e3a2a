"""PyTorch reference for halfstep's bench: the same networks as src/model/mlp.ts and src/model/unet.ts,
loaded with halfstep's own initial weights, trained on the same batches with the same loss, clipping,
Adam and EMA, so the first losses must agree before the times are compared.

Usage: python3 bench/torch_ref.py DIR   (DIR holds manifest.json and the .npy files bench/index.ts wrote)
Prints one JSON line: {"losses": [...], "ms_per_step": ..., "sample_ms": {"1": ..., ...}, "device": ...}.
"""
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def load(dir_, name):
    return torch.from_numpy(np.load(os.path.join(dir_, name)).copy())


def embedding(logsnr, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=logsnr.device) / half)
    c = torch.atan(torch.exp(torch.clamp(logsnr, -20, 20) * -0.5)) / (math.pi / 2)
    ang = (c * 1000)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], 1)


def dense(p, name, x):
    return x @ p[name + ".w"] + p[name + ".b"]


def mlp(p, cfg, z, logsnr):
    t = F.silu(dense(p, "temb.1", F.silu(dense(p, "temb.0", embedding(logsnr, cfg["emb_dim"])))))
    h = dense(p, "in", z)
    for b in range(cfg["blocks"]):
        a = dense(p, f"block{b}.fc1", F.silu(h)) + dense(p, f"block{b}.temb", t)
        h = h + dense(p, f"block{b}.fc2", F.silu(a))
    return dense(p, "out", F.silu(h))


# --- UNet, NCHW inside; halfstep's tensors are NHWC and its conv filters HWIO -----------------------
def conv(p, name, x, stride=1):
    w = p[name + ".w"]  # already OIHW
    k = w.shape[-1]
    if stride == 2:
        x = F.pad(x, (0, 1, 0, 1))  # TensorFlow 'same' for stride 2 on even sizes: the extra row/column at the end
        return F.conv2d(x, w, p[name + ".b"], stride=2)
    return F.conv2d(x, w, p[name + ".b"], padding=k // 2)


def group_norm(p, name, x, groups):
    return F.group_norm(x, groups, p[name + ".g"], p[name + ".b"], eps=1e-5)


def attention(p, name, x, groups, heads):
    B, C, H, W = x.shape
    L, d = H * W, C // heads
    h = group_norm(p, name + ".norm", x, groups).permute(0, 2, 3, 1).reshape(B * L, C)
    qkv = dense(p, name + ".qkv", h)

    def split(i):
        return qkv[:, i * C:(i + 1) * C].reshape(B, L, heads, d).permute(0, 2, 1, 3)

    q, k, v = split(0), split(1), split(2)
    o = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), -1) @ v
    o = o.permute(0, 2, 1, 3).reshape(B * L, C)
    return x + dense(p, name + ".proj", o).reshape(B, H, W, C).permute(0, 3, 1, 2)


def res_block(p, cfg, name, x, t):
    h = conv(p, name + ".conv1", F.silu(group_norm(p, name + ".norm1", x, cfg["groups"])))
    h = h + dense(p, name + ".temb", t)[:, :, None, None]
    h = F.silu(group_norm(p, name + ".norm2", h, cfg["groups"]))
    h = conv(p, name + ".conv2", h)
    skip = x if x.shape[1] == h.shape[1] else conv(p, name + ".skip", x)
    return skip + h


def unet(p, cfg, z, logsnr):
    mults, nrb, attn_res = cfg["channel_mults"], cfg["num_res_blocks"], cfg["attention_resolutions"]
    g, heads = cfg["groups"], cfg["heads"]
    H = z.shape[1]
    res = [H // 2 ** i for i in range(len(mults))]
    t = F.silu(dense(p, "temb.1", F.silu(dense(p, "temb.0", embedding(logsnr, cfg["emb_dim"])))))
    h = conv(p, "in", z.permute(0, 3, 1, 2))
    skips = [h]
    last = len(mults) - 1
    for i in range(len(mults)):
        for j in range(nrb):
            h = res_block(p, cfg, f"down{i}.res{j}", h, t)
            if res[i] in attn_res:
                h = attention(p, f"down{i}.attn{j}", h, g, heads)
            skips.append(h)
        if i != last:
            h = conv(p, f"down{i}.down", h, 2)
            skips.append(h)
    h = res_block(p, cfg, "mid.res0", h, t)
    if res[last] in attn_res:
        h = attention(p, "mid.attn", h, g, heads)
    h = res_block(p, cfg, "mid.res1", h, t)
    for i in range(last, -1, -1):
        for j in range(nrb + 1):
            h = res_block(p, cfg, f"up{i}.res{j}", torch.cat([h, skips.pop()], 1), t)
            if res[i] in attn_res:
                h = attention(p, f"up{i}.attn{j}", h, g, heads)
        if i != 0:
            h = conv(p, f"up{i}.up", F.interpolate(h, scale_factor=2, mode="nearest"))
    out = conv(p, "out.conv", F.silu(group_norm(p, "out.norm", h, g)))
    return out.permute(0, 2, 3, 1)


def main():
    d = sys.argv[1]
    m = json.load(open(os.path.join(d, "manifest.json")))
    dev = torch.device("cuda" if m["device"] == "gpu" and torch.cuda.is_available() else "cpu")
    if dev.type == "cpu":
        torch.set_num_threads(int(os.environ.get("HALFSTEP_TORCH_THREADS", os.cpu_count() or 1)))
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    params = {}
    for e in m["params"]:
        t = load(d, e["file"])
        if e["kind"] == "conv":
            t = t.permute(3, 2, 0, 1).contiguous()  # HWIO → OIHW
        params[e["name"]] = t.to(dev).requires_grad_(True)
    plist = [params[e["name"]] for e in m["params"]]
    ema = [q.detach().clone() for q in plist]
    net = mlp if m["network"] == "mlp" else unet
    cfg = m["config"]
    batches = [{k: load(d, b[k]).to(dev) for k in ("x", "eps", "logsnr")} for b in m["batches"]]
    opt = torch.optim.Adam(plist, lr=m["lr"], betas=(0.9, 0.999), eps=1e-8)
    bshape = lambda l, x: l.reshape([-1] + [1] * (x.dim() - 1))

    def step(b):
        x, eps, l = b["x"], b["eps"], b["logsnr"]
        a, s = bshape(torch.sqrt(torch.sigmoid(l)), x), bshape(torch.sqrt(torch.sigmoid(-l)), x)
        z = a * x + s * eps
        xhat = a * z - s * net(params, cfg, z, l)  # v-parameterization
        w = 1 + torch.exp(l)  # snr_plus_one
        loss = (w * ((x - xhat) ** 2).mean(dim=tuple(range(1, x.dim())))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plist, m["clip"])
        opt.step()
        with torch.no_grad():
            for e_, q in zip(ema, plist):
                e_.mul_(0.999).add_(q, alpha=0.001)
        return loss

    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    losses = [float(step(batches[i % len(batches)])) for i in range(m["check_steps"])]
    for i in range(m["warmup"]):
        step(batches[i % len(batches)])
    sync()
    ms = float("inf")
    for _ in range(m.get("time_blocks", 1)):  # the fastest block counts, as on halfstep's side
        t0 = time.perf_counter()
        for i in range(m["time_steps"]):
            step(batches[i % len(batches)])
        sync()
        ms = min(ms, (time.perf_counter() - t0) * 1000 / m["time_steps"])

    sample_ms = {}
    with torch.no_grad():
        noise = torch.randn([m["sample_batch"]] + m["data_shape"], device=dev)
        for n in m["sample_steps"]:
            def run():
                zz = noise
                for k in range(n, 0, -1):
                    u, s_ = k / n, (k - 1) / n
                    lu = lam(u)
                    l = torch.full((zz.shape[0],), lu, device=dev)
                    a, s = math.sqrt(sig(lu)), math.sqrt(sig(-lu))
                    xh = torch.clamp(a * zz - s * net(params, cfg, zz, l), m["range"][0], m["range"][1])
                    if s_ <= 0:
                        return xh
                    ls = lam(s_)
                    eps_ = (zz - a * xh) / s
                    zz = math.sqrt(sig(ls)) * xh + math.sqrt(sig(-ls)) * eps_
                return zz
            run()
            sync()
            t0 = time.perf_counter()
            reps = max(1, m["sample_repeats"])
            for _ in range(reps):
                run()
            sync()
            sample_ms[str(n)] = (time.perf_counter() - t0) * 1000 / reps
    print(json.dumps({"losses": losses, "ms_per_step": ms, "sample_ms": sample_ms, "device": str(dev), "torch": torch.__version__, "threads": torch.get_num_threads()}))


B_ = math.atan(math.exp(-10))
A_ = math.atan(math.exp(10)) - B_


def lam(u):
    return -2 * math.log(math.tan(A_ * u + B_))


def sig(x):
    return 1 / (1 + math.exp(-x))


if __name__ == "__main__":
    main()
