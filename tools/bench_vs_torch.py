#!/usr/bin/python3
"""cnnviz vs PyTorch on SqueezeNet 1.1: per-iteration time of forward alone
and of forward + gradient of one class score w.r.t. the input (parameters
frozen), alternating the two engines in one run so both see the same machine
load. A benchmark, not a test: needs Debian's python3-torch and python3-onnx
(run with /usr/bin/python3); never part of `make test`.

    /usr/bin/python3 tools/bench_vs_torch.py [--model M] [--sizes 224] [--batches 1]
        [--threads 1,2] [--rounds 5] [--iters 20] [--cnnviz bin/cnnviz]

For each size, batch and thread count T it runs `cnnviz bench --threads T`
and the same loop in PyTorch at 1 and at 2 threads, alternately, `rounds`
times, and reports the median over rounds of each one's median
milliseconds. The ratio is PyTorch's best thread setting over cnnviz at T.
PyTorch's model is torchvision's squeezenet1_1 layout (rebuilt here, as
torchvision is not packaged with python3-torch) with the ONNX file's
initializers loaded by name.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import onnx
import onnx.numpy_helper
import torch
import torch.nn as nn


class Fire(nn.Module):
    def __init__(self, cin, squeeze, e1, e3):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


def squeezenet1_1():
    """torchvision.models.squeezenet1_1's layers and parameter names."""
    m = nn.Module()
    m.features = nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(64, 16, 64, 64), Fire(128, 16, 64, 64),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(128, 32, 128, 128), Fire(256, 32, 128, 128),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
        Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
    m.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, 1000, 1),
                                 nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1))

    def forward(x):
        return torch.flatten(m.classifier(m.features(x)), 1)
    m.forward = forward
    return m


def load_torch_model(path):
    m = squeezenet1_1()
    init = {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy())
            for t in onnx.load(path).graph.initializer}
    state = m.state_dict()
    missing = [k for k in state if k not in init]
    if missing:
        sys.exit(f"{path}: not SqueezeNet 1.1 (no initializer {missing[0]})")
    m.load_state_dict({k: init[k] for k in state})
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def torch_bench(model, size, batch, threads, iters):
    """Median ms of forward (no autograd) and forward + input gradient."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(12345)
    x = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    tf, tb = [], []
    for k in range(-3, iters):
        t0 = time.perf_counter()
        with torch.no_grad():
            model.forward(x)
        t1 = time.perf_counter()
        xg = x.clone().requires_grad_(True)
        y = model.forward(xg)
        # one class score per image, as cnnviz bench seeds it
        score = sum(y[b, b % y.shape[1]] for b in range(batch))
        score.backward()
        t2 = time.perf_counter()
        if k >= 0:
            tf.append((t1 - t0) * 1e3)
            tb.append((t2 - t1) * 1e3)
    return statistics.median(tf), statistics.median(tb)


def cnnviz_bench(exe, model, size, batch, threads, iters):
    out = subprocess.run([exe, "bench", "-m", model, "--size", f"{size}x{size}",
                          "--batch", str(batch), "--threads", str(threads),
                          "--iters", str(iters), "--json"],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    return (r["forward_ms"]["median"], r["forward_backward_ms"]["median"],
            r["peak_rss_mb"])


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(here, "..", "..", "shared", "imagenet",
                                                    "squeezenet1_1.onnx"))
    ap.add_argument("--cnnviz", default=os.path.join(here, "..", "bin", "cnnviz"))
    ap.add_argument("--sizes", default="224")
    ap.add_argument("--batches", default="1")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_interop_threads(1)
    model = load_torch_model(a.model)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at start; median over {a.rounds} alternating rounds of "
          f"each one's median ms over {a.iters} iterations")
    print(f"{'size':>5} {'batch':>5} {'thr':>3} | {'cnnviz fwd':>10} {'fwd+grad':>9} {'RSS MB':>7} | "
          f"{'torch fwd':>9} {'fwd+grad':>9} {'(thr)':>5} | {'fwd x':>6} {'f+g x':>6}")
    for size in [int(s) for s in a.sizes.split(",")]:
        for batch in [int(b) for b in a.batches.split(",")]:
            for thr in [int(t) for t in a.threads.split(",")]:
                ours, theirs = [], {1: [], 2: []}
                for _ in range(a.rounds):
                    ours.append(cnnviz_bench(a.cnnviz, a.model, size, batch, thr, a.iters))
                    for tt in theirs:
                        theirs[tt].append(torch_bench(model, size, batch, tt, a.iters))
                of = statistics.median(r[0] for r in ours)
                ob = statistics.median(r[1] for r in ours)
                rss = max(r[2] for r in ours)
                best = {tt: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
                        for tt, v in theirs.items()}
                tf = min(v[0] for v in best.values())
                bt = min(best, key=lambda tt: best[tt][1])
                tb = best[bt][1]
                print(f"{size:>5} {batch:>5} {thr:>3} | {of:>10.2f} {ob:>9.2f} {rss:>7.1f} | "
                      f"{tf:>9.2f} {tb:>9.2f} {bt:>5} | {tf / of:>6.2f} {tb / ob:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
