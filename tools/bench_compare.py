#!/usr/bin/python3
"""cnnviz against PyTorch and ONNX Runtime on torchvision architectures: the
per-iteration time of a forward pass and of a forward pass + the gradient of
one class score with respect to the input (parameters frozen), all engines
alternating in one run so that they see the same machine. A benchmark, not
a test: needs Debian's python3-torch, python3-torchvision and python3-onnx
(run with /usr/bin/python3), and for ONNX Runtime node with npm's
onnxruntime-node (`npm install --ignore-scripts onnxruntime-node` in DIR,
then --node-modules DIR/node_modules). Never part of `make test`.

    /usr/bin/python3 tools/bench_compare.py [--models resnet18,mobilenet_v2]
        [--threads 1,2] [--rounds 3] [--iters 10] [--node-modules DIR]

Each architecture is built by torchvision with random weights (seed 0) and
exported once to ONNX (opset 13) in --cache; cnnviz and ONNX Runtime run
that file, PyTorch the module it came from. cnnviz runs twice: with the
environment as it is (this workplace pins OpenBLAS to its Haswell kernels
with OPENBLAS_CORETYPE) and with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
removed for that command alone (OpenBLAS then picks the CPU's own kernels);
each prints the kernels OpenBLAS ran. Every engine runs at every thread
count of --threads; a table row takes each engine's best thread count. The
numbers are medians over rounds of each run's median over --iters
iterations. Ratios above 1 favour cnnviz:
  ORT/cv fwd   ONNX Runtime's forward over cnnviz's (target >= 1)
  torch/cv f+g PyTorch's forward + gradient over cnnviz's (target >= 3)
  cv f+g/ORT   cnnviz's forward + gradient over ONNX Runtime's forward
               (target <= 2.2; here smaller is better)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torchvision

ALL = "squeezenet1_1,resnet18,resnet50,vgg16,densenet121,googlenet,mobilenet_v2,efficientnet_b0"
NATIVE_ENV = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}


def build(name):
    torch.manual_seed(0)
    kw = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    m = torchvision.models.get_model(name, weights=None, **kw).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def export(name, model, size, cache):
    path = os.path.join(cache, f"{name}_{size}.onnx")
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        torch.onnx.export(model, torch.zeros(1, 3, size, size), path + ".tmp", opset_version=13,
                          input_names=["image"], output_names=["logits"])
        os.replace(path + ".tmp", path)
    return path


def torch_bench(model, size, threads, iters):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(12345)
    x = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    tf, tb = [], []
    for k in range(-3, iters):
        t0 = time.perf_counter()
        with torch.no_grad():
            model(x)
        t1 = time.perf_counter()
        xg = x.clone().requires_grad_(True)
        y = model(xg)
        y[0, 0].backward()
        t2 = time.perf_counter()
        if k >= 0:
            tf.append((t1 - t0) * 1e3)
            tb.append((t2 - t1) * 1e3)
    return {"fwd": statistics.median(tf), "fg": statistics.median(tb)}


def cnnviz_bench(exe, path, threads, iters, native):
    r = subprocess.run([exe, "bench", "-m", path, "--threads", str(threads), "--iters", str(iters), "--json"],
                       check=True, capture_output=True, text=True, env=NATIVE_ENV if native else None)
    j = json.loads(r.stdout)
    return {"fwd": j["forward_ms"]["median"], "fg": j["forward_backward_ms"]["median"],
            "core": j["openblas_core"], "peak": j["fma_peak_gflops"], "gflop": j["forward_gflop"],
            "rss": j["peak_rss_mb"]}


def ort_bench(script, modules, path, size, threads, iters):
    env = dict(os.environ, NODE_PATH=modules)
    r = subprocess.run(["node", script, path, str(size), str(threads), str(iters)], check=True,
                       capture_output=True, text=True, env=env)
    j = json.loads(r.stdout)
    return {"fwd": j["median"], "version": j.get("version", "?")}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=ALL)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--cnnviz", default=os.path.join(here, "..", "bin", "cnnviz"))
    ap.add_argument("--cache", default="/tmp/cnnviz_bench_models")
    ap.add_argument("--node-modules", help="the node_modules holding onnxruntime-node (omit: no ONNX Runtime)")
    ap.add_argument("--json", help="also write every measurement here")
    a = ap.parse_args()
    torch.set_num_interop_threads(1)
    threads = [int(t) for t in a.threads.split(",")]
    names = a.models.split(",")
    engines = ["cnnviz", "cnnviz-native", "torch"] + (["ort"] if a.node_modules else [])
    models = {n: build(n) for n in names}
    paths = {n: export(n, models[n], a.size, a.cache) for n in names}
    runs = {(n, e, t): [] for n in names for e in engines for t in threads}
    info = {}
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start; {a.rounds} alternating rounds of {a.iters} "
          f"iterations, {a.size}x{a.size}, batch 1", flush=True)
    for rnd in range(a.rounds):
        for n in names:
            for t in threads:
                for e in engines:
                    if e == "torch":
                        r = torch_bench(models[n], a.size, t, a.iters)
                    elif e == "ort":
                        r = ort_bench(os.path.join(here, "bench_ort.js"), a.node_modules, paths[n], a.size, t,
                                      a.iters)
                        info["ort"] = r["version"]
                    else:
                        r = cnnviz_bench(a.cnnviz, paths[n], t, a.iters, e == "cnnviz-native")
                        info[e] = r["core"]
                        info["peak"] = r["peak"]
                        info[(n, "gflop")] = r["gflop"]
                    runs[(n, e, t)].append(r)
        print(f"  round {rnd + 1} of {a.rounds} done, load average {os.getloadavg()[0]:.2f}", flush=True)

    def med(n, e, t, key):
        return statistics.median(r[key] for r in runs[(n, e, t)])

    def best(n, e, key):
        t = min(threads, key=lambda tt: med(n, e, tt, key))
        return med(n, e, t, key), t

    print(f"OpenBLAS kernels: cnnviz {info.get('cnnviz')}, cnnviz-native {info.get('cnnviz-native')}; "
          f"one core's FMA peak {info.get('peak', 0):.0f} GFLOP/s; ONNX Runtime {info.get('ort', 'not run')}")
    print("ms per iteration, best thread count in brackets; f+g = forward + input gradient")
    hdr = (f"{'model':<16} {'GFLOP':>5} | {'cnnviz fwd':>12} {'f+g':>12} | {'native fwd':>12} {'f+g':>12} | "
           f"{'torch fwd':>12} {'f+g':>12} | {'ORT fwd':>11} | {'ORT/cv fwd':>10} {'torch/cv f+g':>12} "
           f"{'cv f+g/ORT':>10}")
    print(hdr)
    table = []
    for n in names:
        row = {"model": n, "gflop": info[(n, "gflop")]}
        for e in engines:
            row[e] = {"fwd": best(n, e, "fwd")}
            if e != "ort":
                row[e]["fg"] = best(n, e, "fg")
        table.append(row)

        def cell(e, k):
            if e not in row or k not in row[e]:
                return f"{'-':>12}"
            v, t = row[e][k]
            return f"{v:>8.1f} ({t})"

        def ratios(e):
            cf, cg = row[e]["fwd"][0], row[e]["fg"][0]
            tg = row["torch"]["fg"][0]
            of = row["ort"]["fwd"][0] if "ort" in row else float("nan")
            return of / cf, tg / cg, cg / of

        r1, r2 = ratios("cnnviz"), ratios("cnnviz-native")
        print(f"{n:<16} {row['gflop']:>5.2f} | {cell('cnnviz', 'fwd')} {cell('cnnviz', 'fg')} | "
              f"{cell('cnnviz-native', 'fwd')} {cell('cnnviz-native', 'fg')} | {cell('torch', 'fwd')} "
              f"{cell('torch', 'fg')} | {cell('ort', 'fwd')[1:]} | {r1[0]:>4.2f}/{r2[0]:<5.2f} "
              f"{r1[1]:>6.2f}/{r2[1]:<5.2f} {r1[2]:>4.2f}/{r2[2]:<5.2f}", flush=True)
    print("ratios: as set / native OpenBLAS kernels")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"info": {k if isinstance(k, str) else "/".join(k): v for k, v in info.items()},
                       "table": table}, f, indent=1)


if __name__ == "__main__":
    main()
