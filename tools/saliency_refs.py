#!/usr/bin/python3
"""Independent PyTorch references for cnv_saliency's attribution suite.

Written from include/cnnviz.h's comments (section "Saliency maps") and the
papers, never from src/. A small ONNX interpreter runs the two test models
in float64; each method below says which rule of the header it follows.
Writes raw little-endian float32 tensors and a MANIFEST into
tests/saliency_refs/, read by tests/test_saliency_refs.c.

    /usr/bin/python3 tools/saliency_refs.py            # writes the files
    /usr/bin/python3 tools/saliency_refs.py --check    # only the checks

Checks run every time: the interpreter's inception logits against
tests/zoo/inception_op13.logits.f32, its gradient against central finite
differences, IG and Blur IG completeness.
"""
import argparse
import gzip
import math
import os
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "saliency_refs")
FASHION = os.path.join(ROOT, "weights", "fashion_mnist.onnx")
INCEPTION = os.path.join(ROOT, "tests", "zoo", "inception_op13.onnx")
FASHION_DATA = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"

torch.set_num_threads(2)


# ------------------------------------------------------------- ReLU rules

class GuidedRelu(torch.autograd.Function):
    """Springenberg et al.: dy passes where the input was positive (y > 0)
    and dy > 0."""
    @staticmethod
    def forward(ctx, x):
        y = x.clamp(min=0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        return dy * ((y > 0) & (dy > 0)).to(dy.dtype)


class DeconvRelu(torch.autograd.Function):
    """Zeiler and Fergus: dy passes where dy > 0, whatever the input."""
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, dy):
        return dy.clamp(min=0)


RELU = {"grad": F.relu, "guided": GuidedRelu.apply, "deconvnet": DeconvRelu.apply}


# ------------------------------------------------------ ONNX interpreter

def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class Net:
    """Runs an ONNX graph of Conv, Relu, MaxPool, AveragePool,
    GlobalAveragePool, Concat, Flatten, Reshape, Gemm, MatMul, Add and
    BatchNormalization with torch.nn.functional."""

    def __init__(self, path, dtype=torch.float64):
        self.model = onnx.load(path)
        self.dtype = dtype
        g = self.model.graph
        self.consts = {t.name: torch.from_numpy(onnx.numpy_helper.to_array(t).copy())
                       for t in g.initializer}
        for k, v in self.consts.items():
            if v.is_floating_point():
                self.consts[k] = v.to(dtype)
        self.input = [i.name for i in g.input if i.name not in self.consts][0]
        self.output = g.output[0].name
        self.meta = {p.key: p.value for p in self.model.metadata_props}
        # cnv_model_preprocess: cnnviz.mean / cnnviz.std, else 0 and 1.
        # The library keeps them as float32, so the reference does too.
        c = g.input[0].type.tensor_type.shape.dim[1].dim_value
        def vec(key, default):
            if key not in self.meta:
                return [default] * c
            v = [float(np.float32(s)) for s in self.meta[key].split(",")]
            return v * c if len(v) == 1 else v
        self.mean = vec("cnnviz.mean", 0.0)
        self.std = vec("cnnviz.std", 1.0)

    def run(self, x, relu="grad", keep=(), override=None):
        """Forward pass; returns every tensor by name. override maps a
        tensor name to a function of its computed value (ablation)."""
        env = dict(self.consts)
        env[self.input] = x
        for node in self.model.graph.node:
            a = attrs(node)
            ins = [env[n] if n else None for n in node.input]
            op = node.op_type
            if op == "Conv":
                w = ins[1]
                k = w.shape[2:]
                pads = a.get("pads", [0] * 4)
                strides = a.get("strides", [1, 1])
                dil = a.get("dilations", [1, 1])
                xin = ins[0]
                if pads[0] != pads[2] or pads[1] != pads[3]:
                    xin = F.pad(xin, (pads[1], pads[3], pads[0], pads[2]))
                    pads = [0, 0, 0, 0]
                y = F.conv2d(xin, w, ins[2] if len(ins) > 2 else None,
                             stride=strides, padding=(pads[0], pads[1]),
                             dilation=dil, groups=a.get("group", 1))
            elif op == "Relu":
                y = RELU[relu](ins[0])
            elif op == "MaxPool":
                pads = a.get("pads", [0] * 4)
                assert pads[0] == pads[2] and pads[1] == pads[3]
                y = F.max_pool2d(ins[0], a["kernel_shape"], a.get("strides", [1, 1]),
                                 (pads[0], pads[1]), a.get("dilations", [1, 1]),
                                 ceil_mode=bool(a.get("ceil_mode", 0)))
            elif op == "AveragePool":
                pads = a.get("pads", [0] * 4)
                assert pads[0] == pads[2] and pads[1] == pads[3]
                y = F.avg_pool2d(ins[0], a["kernel_shape"], a.get("strides", [1, 1]),
                                 (pads[0], pads[1]), ceil_mode=bool(a.get("ceil_mode", 0)),
                                 count_include_pad=bool(a.get("count_include_pad", 0)))
            elif op == "GlobalAveragePool":
                y = ins[0].mean(dim=(2, 3), keepdim=True)
            elif op == "Concat":
                y = torch.cat(ins, dim=a["axis"])
            elif op == "Flatten":
                ax = a.get("axis", 1)
                y = ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
            elif op == "Reshape":
                shape = [int(s) for s in ins[1].tolist()]
                shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
                y = ins[0].reshape(shape)
            elif op == "Gemm":
                A, B = ins[0], ins[1]
                if a.get("transA", 0):
                    A = A.t()
                if a.get("transB", 0):
                    B = B.t()
                y = a.get("alpha", 1.0) * (A @ B)
                if len(ins) > 2 and ins[2] is not None:
                    y = y + a.get("beta", 1.0) * ins[2]
            elif op == "MatMul":
                y = ins[0] @ ins[1]
            elif op == "Add":
                y = ins[0] + ins[1]
            elif op == "BatchNormalization":
                sc, b, mu, var = ins[1:5]
                eps = a.get("epsilon", 1e-5)
                sh = (1, -1, 1, 1)
                y = (ins[0] - mu.view(sh)) / torch.sqrt(var.view(sh) + eps) * sc.view(sh) + b.view(sh)
            else:
                raise NotImplementedError(op)
            name = node.output[0]
            if override and name in override:
                y = override[name](y)
            if name in keep:
                y.retain_grad()
            env[name] = y
        return env

    def black(self, shape):
        """CNV_BASELINE_BLACK: pixel 0 in every channel, normalized, and
        rounded to float32 like every input the library sees. (Unrounded,
        it would differ by an ulp from the image's own black pixels, which
        then become inputs that Guided IG must move: PAIR's path changes
        completely.)"""
        c = shape[0]
        v = torch.tensor([float(np.float32(-np.float32(self.mean[k])) / np.float32(self.std[k]))
                          for k in range(c)], dtype=self.dtype)
        return v.view(c, 1, 1).expand(shape).clone()


# ---------------------------------------------------------------- targets

class Target:
    """The header's target: a class's raw score, or a 4-D layer's channel
    mean, or its unit (y, x)."""

    def __init__(self, net, x, cls=-1, score=None, y=-1, xx=-1):
        self.net, self.score, self.y, self.x = net, score, y, xx
        with torch.no_grad():
            env = net.run(x[None])
        if score is None:
            t = env[net.output][0]
            self.cls = int(t.argmax()) if cls < 0 else cls
        else:
            t = env[score][0]
            self.cls = int(t.mean(dim=(1, 2)).argmax()) if cls < 0 else cls
        self.value = float(self.of(env)[0])

    def of(self, env):
        """The target per batch item."""
        if self.score is None:
            return env[self.net.output][:, self.cls]
        t = env[self.score][:, self.cls]
        if self.y >= 0 and self.x >= 0:
            return t[:, self.y, self.x]
        return t.mean(dim=(1, 2))

    def prob(self, env):
        """The metrics' curve value: the class's softmax probability (a
        layer target: its value)."""
        if self.score is None:
            return torch.softmax(env[self.net.output], dim=1)[:, self.cls]
        return self.of(env)


def grad(net, tgt, xs, relu="grad"):
    """g(x) for a batch xs (n x c x h x w): d target / d input."""
    xs = xs.detach().clone().requires_grad_(True)
    env = net.run(xs, relu=relu)
    tgt.of(env).sum().backward()
    return xs.grad.detach()


def scores(net, tgt, xs, chunk=16):
    out = []
    with torch.no_grad():
        for i in range(0, xs.shape[0], chunk):
            out.append(tgt.of(net.run(xs[i:i + chunk])))
    return torch.cat(out)


# ---------------------------------------------------- channel reductions

def absmax(a):
    return a.abs().amax(dim=0)


def signed(a):
    return a.sum(dim=0)


# ---------------------------------------------------------------- blur

def blur_chw(x, sigma):
    """cnv_blur_chw as the brief states it: separable, kernel
    exp(-t^2 / (2 sigma^2)) normalized, radius ceil(3 sigma) (at least 1),
    borders mirrored like scipy's 'reflect' (d c b a | a b c d | d c b a);
    sigma 0 is no blur."""
    if sigma <= 0:
        return x.clone()
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()

    def fold(i, n):
        i = i % (2 * n)
        return i if i < n else 2 * n - 1 - i

    def along(z, dim):
        n = z.shape[dim]
        out = torch.zeros_like(z)
        for j, kj in zip(range(-r, r + 1), k):
            idx = torch.tensor([fold(i + j, n) for i in range(n)])
            out = out + kj * z.index_select(dim, idx)
        return out

    return along(along(x, 2), 1)


# ------------------------------------------------------ gradient methods

def m_grad(net, tgt, x, relu="grad"):
    return grad(net, tgt, x[None], relu)[0]


def m_gradxinput(net, tgt, x):
    return x * m_grad(net, tgt, x)


def m_ig(net, tgt, x, b, steps):
    """Midpoint Riemann sum: (x - b) / steps * sum_i g(b + (i + 1/2) /
    steps * (x - b)); returns a and S(b)."""
    al = (torch.arange(steps, dtype=x.dtype) + 0.5) / steps
    xs = b[None] + al.view(-1, 1, 1, 1) * (x - b)[None]
    g = torch.cat([grad(net, tgt, xs[i:i + 16]) for i in range(0, steps, 16)])
    return (x - b) * g.mean(dim=0), float(scores(net, tgt, b[None])[0])


def m_blurig(net, tgt, x, steps, max_sigma):
    """s_i = i / steps * max, m_i = (s_i + s_{i+1}) / 2, a = sum_i
    g(x(m_i)) * (x(s_i) - x(s_{i+1})); returns a and S(x(max))."""
    s = [i / steps * max_sigma for i in range(steps + 1)]
    xs = [blur_chw(x, si) for si in s]
    mids = torch.stack([blur_chw(x, (s[i] + s[i + 1]) / 2) for i in range(steps)])
    g = torch.cat([grad(net, tgt, mids[i:i + 16]) for i in range(0, steps, 16)])
    a = torch.zeros_like(x)
    for i in range(steps):
        a += g[i] * (xs[i] - xs[i + 1])
    return a, float(scores(net, tgt, xs[-1][None])[0])


def m_guidedig(net, tgt, x, b, steps, fraction=0.25, max_dist=0.02, dtype=np.float64):
    """PAIR saliency's guided_ig_impl (saliency/core/guided_ig.py, commit
    7b72b67), line for line in numpy, the gradients from torch. The details
    it fixes, which the C port must share:
      - alpha = (step + 1) / steps; the allowed band [alpha - max_dist,
        alpha + max_dist] clipped to [0, 1]; x_min, x_max its end points
        on the straight line b + (x - b) alpha;
      - l1_target = l1_total * (1 - (step + 1) / steps), l1 over all c*h*w;
      - sub-steps until gamma <= 1: features whose alpha ((x - b) /
        (input - b); NaN where input == b, taken as alpha_max) is below
        alpha_min jump to x_min first; stop when l1 to the input is
        isclose to the target (rel and abs tolerance 1e-9); features at
        x_max exactly get gradient +inf; the threshold is np.quantile of
        |grad| over ALL features (the +inf ones included) at `fraction`
        with method 'lower' (the sorted value at floor(fraction*(n-1)));
        selected: |grad| <= threshold and grad != inf; l1_s = sum over the
        selected of |x - x_max|; gamma = (l1_current - l1_target) / l1_s
        (inf when l1_s = 0); gamma > 1: the selected move to x_max, else
        x_sel += gamma (x_max - x)_sel;
      - attr += (x - x_old) * grad at the step's start, after every
        sub-step, including the catch-up of the isclose exit;
      - one gradient per step, evaluated at the x the step starts from.
    dtype float32 runs the path arithmetic and the gradients in float32
    (a float32 model), to show how much the selection depends on it."""
    xin = x.numpy().astype(dtype)
    xb = b.numpy().astype(dtype)
    xc = xb.copy()
    l1_total = np.abs(xin - xb).sum()
    attr = np.zeros_like(xin)
    if l1_total == 0:
        return attr, float(scores(net, tgt, b[None].to(net.dtype))[0])
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    substeps = 0
    for step in range(steps):
        ga = grad(net, tgt, torch.from_numpy(xc).to(tdt)[None])[0].numpy().astype(dtype)
        gr = ga.copy()
        alpha = (step + 1.0) / steps
        amin = max(alpha - max_dist, 0.0)
        amax = min(alpha + max_dist, 1.0)
        x_min = xb + (xin - xb) * dtype(amin)
        x_max = xb + (xin - xb) * dtype(amax)
        l1_target = l1_total * (1 - (step + 1) / steps)
        gamma = np.inf
        while gamma > 1.0:
            substeps += 1
            x_old = xc.copy()
            with np.errstate(divide="ignore", invalid="ignore"):
                xa = np.where(xin - xb != 0, (xc - xb) / (xin - xb), np.nan)
            xa[np.isnan(xa)] = amax
            behind = xa < amin
            xc[behind] = x_min[behind]
            l1_cur = np.abs(xc - xin).sum()
            if math.isclose(l1_target, l1_cur, rel_tol=1e-9, abs_tol=1e-9):
                attr += (xc - x_old) * ga
                break
            gr[xc == x_max] = np.inf
            thr = np.quantile(np.abs(gr), fraction, method="lower")
            s = np.logical_and(np.abs(gr) <= thr, gr != np.inf)
            l1_s = (np.abs(xc - x_max) * s).sum()
            gamma = (l1_cur - l1_target) / l1_s if l1_s > 0 else np.inf
            if l1_s == 0 and dtype != np.float64:
                # Not in PAIR. In float32, b + (input - b) * 1 need not be
                # the input, so the last step's l1 never reaches 0 and
                # PAIR's loop would not end: stop when nothing can move.
                break
            if gamma > 1.0:
                xc[s] = x_max[s]
            else:
                assert gamma > 0, gamma
                xc[s] = (xc + (x_max - xc) * gamma)[s]
            attr += (xc - x_old) * ga
    m_guidedig.substeps = substeps
    return attr, float(scores(net, tgt, b[None].to(net.dtype))[0])


# -------------------------------------------------------------- CAMs

def upsample(cam, h, w):
    """Bilinear, half-pixel centers, edges clamped."""
    return F.interpolate(cam[None, None], size=(h, w), mode="bilinear",
                         align_corners=False)[0, 0]


def layer_grad(net, tgt, x, layer):
    """A (K x u x v) and dS/dA."""
    xs = x[None].clone().requires_grad_(True)
    env = net.run(xs, keep=(layer,))
    tgt.of(env).sum().backward()
    return env[layer][0].detach(), env[layer].grad[0].detach()


def cam_from(A, w):
    return F.relu((w.view(-1, 1, 1) * A).sum(dim=0))


def m_gradcam(A, g):
    return cam_from(A, g.mean(dim=(1, 2)))


def m_gradcampp(A, g):
    g2, g3 = g * g, g * g * g
    sA = A.sum(dim=(1, 2)).view(-1, 1, 1)
    den = 2 * g2 + sA * g3 + 1e-7
    a = torch.where(g != 0, g2 / den, torch.zeros_like(g))
    w = (F.relu(g) * a).sum(dim=(1, 2))
    return cam_from(A, w)


def m_layercam(A, g):
    return F.relu((F.relu(g) * A).sum(dim=0))


def m_xgradcam(A, g):
    w = (A * g).sum(dim=(1, 2)) / (A.sum(dim=(1, 2)) + 1e-7)
    return cam_from(A, w)


def m_eigencam(A):
    """Positions as rows (u*v x K), each channel's mean over positions
    removed, projected on the first right singular vector, signed to
    correlate positively with the channels' sum, then ReLU."""
    K = A.shape[0]
    M = A.reshape(K, -1).t()
    Mc = M - M.mean(dim=0, keepdim=True)
    U, S, Vh = torch.linalg.svd(Mc, full_matrices=False)
    p = Mc @ Vh[0]
    tot = M.sum(dim=1)
    if float((p * (tot - tot.mean())).sum()) < 0:
        p = -p
    gap = float(S[1] / S[0])
    return F.relu(p).reshape(A.shape[1:]), gap


def m_scorecam(net, tgt, x, A, b):
    """w = softmax_k S(b + M_k (x - b)), M_k = A_k upsampled, scaled to
    [0, 1] by (M - min) / (max - min + 1e-8)."""
    h, w = x.shape[1:]
    M = F.interpolate(A[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    mn = M.amin(dim=(1, 2), keepdim=True)
    mx = M.amax(dim=(1, 2), keepdim=True)
    M = (M - mn) / (mx - mn + 1e-8)
    xs = b[None] + M[:, None] * (x - b)[None]
    s = scores(net, tgt, xs)
    return cam_from(A, torch.softmax(s, dim=0))


def m_ablationcam(net, tgt, x, A, layer):
    """w_k = (S - S_k) / S, S_k with channel k of A zeroed."""
    K = A.shape[0]
    S = tgt.value
    sk = []
    with torch.no_grad():
        for k in range(K):
            def zero(t, k=k):
                t = t.clone()
                t[:, k] = 0
                return t
            sk.append(float(tgt.of(net.run(x[None], override={layer: zero}))[0]))
    sk = torch.tensor(sk, dtype=A.dtype)
    w = (S - sk) / S if S != 0 else S - sk
    return cam_from(A, w)


def windows(n, window, stride):
    """0, stride, 2 stride, ... while the window fits; then one more that
    ends at the edge when the last does not."""
    p = list(range(0, n - window + 1, stride))
    if p[-1] + window < n:
        p.append(n - window)
    return p


def m_occlusion(net, tgt, x, b, window, stride):
    c, h, w = x.shape
    ys, xs_ = windows(h, window, stride), windows(w, window, stride)
    imgs, boxes = [], []
    for y0 in ys:
        for x0 in xs_:
            z = x.clone()
            z[:, y0:y0 + window, x0:x0 + window] = b[:, y0:y0 + window, x0:x0 + window]
            imgs.append(z)
            boxes.append((y0, x0))
    s = scores(net, tgt, torch.stack(imgs))
    tot = torch.zeros(h, w, dtype=x.dtype)
    cnt = torch.zeros(h, w, dtype=x.dtype)
    for (y0, x0), si in zip(boxes, s):
        tot[y0:y0 + window, x0:x0 + window] += tgt.value - si
        cnt[y0:y0 + window, x0:x0 + window] += 1
    return tot / cnt


# ------------------------------------------------------------- metrics

def metric(net, tgt, x, map32, kind, steps, b):
    """Pixels by map value descending, ties by position (a stable sort of
    the float32 map the C side reads); curve[i]: the probability with the
    first round(i h w / steps) changed; area: trapezoid mean."""
    c, h, w = x.shape
    order = np.argsort(-map32.reshape(-1), kind="stable")
    imgs = []
    for i in range(steps + 1):
        n = int(math.floor(i * h * w / steps + 0.5))
        mask = torch.zeros(h * w, dtype=torch.bool)
        mask[torch.from_numpy(order[:n].copy())] = True
        mask = mask.view(1, h, w)
        if kind == "deletion":
            imgs.append(torch.where(mask, b, x))
        else:
            imgs.append(torch.where(mask, x, b))
    with torch.no_grad():
        curve = tgt.prob(net.run(torch.stack(imgs)))
    area = float((curve.sum() - (curve[0] + curve[-1]) / 2) / steps)
    return curve, area


# ------------------------------------------------------------- output

class Writer:
    def __init__(self, out, write):
        self.out, self.write, self.lines, self.total = out, write, [], 0
        self.value = 0.0  # the target's value on the image, for every line
        if write:
            os.makedirs(out, exist_ok=True)
            for f in os.listdir(out):  # no stale tensor outlives a change here
                if f.endswith(".f32"):
                    os.remove(os.path.join(out, f))

    def put(self, name, t, model, method, params, cls, extra=""):
        a = np.asarray(t.detach().numpy() if torch.is_tensor(t) else t, dtype="<f4")
        shape = "x".join(str(s) for s in a.shape)
        val = f" value={self.value:.9g}" if method != "input" else ""
        self.lines.append(f"{name} {model} {method} {params} class={cls} shape={shape}{val}"
                          + (f" {extra}" if extra else ""))
        self.total += a.nbytes
        if self.write:
            a.tofile(os.path.join(self.out, name))

    def finish(self):
        if self.write:
            with open(os.path.join(self.out, "MANIFEST"), "w") as f:
                f.write("# written by tools/saliency_refs.py (float64 torch, stored as float32 LE)\n")
                f.write("# file model method params class shape [notes]\n")
                f.write("\n".join(self.lines) + "\n")
        print(f"{len(self.lines)} tensors, {self.total} bytes", file=sys.stderr)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ------------------------------------------------------------- checks

def fd_check(net, tgt, x, n=12, h=1e-6):
    """Central differences of the target at n pixels against autograd."""
    g = m_grad(net, tgt, x).reshape(-1)
    # Not on the flat background of a Fashion-MNIST image: there equal
    # values tie in MaxPool windows, the target has a kink, and autograd's
    # derivative is one of the one-sided ones (the first maximum's).
    cand = np.nonzero((x.reshape(-1) != x.min()).numpy())[0]
    idx = cand[np.linspace(0, len(cand) - 1, n).astype(int)]
    err = 0.0
    for i in idx:
        e = torch.zeros(x.numel(), dtype=x.dtype)
        e[i] = h
        e = e.view_as(x)
        d = (scores(net, tgt, (x + e)[None]) - scores(net, tgt, (x - e)[None]))[0] / (2 * h)
        err = max(err, abs(float(d) - float(g[i])) / max(1e-3, float(g.abs().max())))
    return err


def hash_noise(n):
    """Deterministic values in [-0.5, 0.5), exact in C and Python:
    ((i * 7919) % 1000) / 1000 - 0.5."""
    i = np.arange(n, dtype=np.int64)
    return ((i * 7919) % 1000) / 1000.0 - 0.5


def fashion_image():
    """Test image 0 plus hash_noise gray levels (+-0.5). Without it the
    flat black background ties in every MaxPool window: the gradient there
    is one of several one-sided derivatives (central differences disagree
    with autograd by 3e-2), float32 rounding picks which, and the library
    and torch differ by 12% of the map's max on the plain image, 1e-6 on
    this one."""
    with gzip.open(FASHION_DATA) as f:
        data = f.read()
    px = np.frombuffer(data, dtype=np.uint8, offset=16, count=28 * 28).astype(np.float64)
    p = ((px + hash_noise(784)) / 255.0).astype(np.float32)
    # The library's float32 normalization (x = (p - mean) / std).
    m, s = np.float32(0.286), np.float32(0.353)
    return ((p - m) / s).astype(np.float32).reshape(1, 28, 28)


def noise_baseline(net, shape):
    """BLACK plus hash_noise * 2 gray levels (in float32, as
    tests/test_saliency_refs.c builds it): a baseline without the constant
    image's MaxPool ties, for Guided IG's first gradient."""
    c, h, w = shape
    u = hash_noise(c * h * w).reshape(c, h, w)
    std = np.array(net.std).reshape(c, 1, 1)
    d = (u * 2.0 / 255.0 / std).astype(np.float32)
    b = net.black(shape).numpy().astype(np.float32)
    return torch.from_numpy((b + d).astype(np.float32).astype(np.float64))


# --------------------------------------------------------------- main

def run_model(W, tag, net, x32, cam_layer, occ, mstep, extra_targets):
    x = torch.from_numpy(x32.astype(np.float64))
    c, h, w = x.shape
    W.put(f"{tag}.input.f32", x32, tag, "input", "-", "-")
    tgt = Target(net, x)
    cls = tgt.cls
    W.value = tgt.value
    log(f"{tag}: class {cls} score {tgt.value:.9g}")
    fd = fd_check(net, tgt, x)
    log(f"{tag}: finite differences vs autograd, max rel err {fd:.2e}")
    assert fd < 1e-6, fd
    black = net.black(x.shape)
    zero = torch.zeros_like(x)
    inc = tag == "inception"  # attributions of its 3 x 64 x 64 kept to a few (size)

    def grad_method(name, a, red, params="-", keep_attr=True, extra=""):
        if keep_attr:
            W.put(f"{tag}.{name}.attr.f32", a, tag, name, params, cls, extra)
        else:
            W.put(f"{tag}.{name}.map.f32", red(a), tag, name, params, cls, extra)

    grad_method("grad", m_grad(net, tgt, x), absmax)
    grad_method("guided", m_grad(net, tgt, x, "guided"), absmax, keep_attr=not inc)
    grad_method("deconvnet", m_grad(net, tgt, x, "deconvnet"), absmax, keep_attr=not inc)
    if not inc:  # x * grad: grad is tested on inception (size)
        grad_method("gradxinput", m_gradxinput(net, tgt, x), signed)
    for bname, b in (("black", black), ("zero", zero)):
        for steps in (64, 16):
            if inc and (bname == "zero" or steps == 16):
                continue  # black is zero at mean 0, std 1
            a, sb = m_ig(net, tgt, x, b, steps)
            log(f"{tag}: ig {bname} {steps}: sum {float(a.sum()):.6g} vs S(x)-S(b) "
                f"{tgt.value - sb:.6g}")
            grad_method(f"ig_{bname}_{steps}", a, signed, f"baseline={bname},steps={steps}",
                        keep_attr=not inc, extra=f"baseline_score={sb:.9g}")
    maxs = 50.0 / 224.0 * max(h, w)
    a, sb = m_blurig(net, tgt, x, 64, maxs)
    log(f"{tag}: blurig: sum {float(a.sum()):.6g} vs S(x)-S(x(max)) {tgt.value - sb:.6g}")
    grad_method("blurig", a, signed, f"steps=64,max_sigma={maxs:.6g}", keep_attr=not inc,
                extra=f"baseline_score={sb:.9g}")
    a, sb = m_guidedig(net, tgt, x, black, 64)
    log(f"{tag}: guidedig: {m_guidedig.substeps} sub-steps, sum {float(a.sum()):.6g} vs "
        f"S(x)-S(b) {tgt.value - sb:.6g}")
    a = torch.from_numpy(a)
    grad_method("guidedig", a, signed, "baseline=black,steps=64,fraction=0.25,max_dist=0.02",
                keep_attr=True, extra=f"baseline_score={sb:.9g} sum={float(a.sum()):.9g}")
    nb = noise_baseline(net, x.shape)
    an, sbn = m_guidedig(net, tgt, x, nb, 64)
    an32, _ = m_guidedig(net32[tag], tgt32[tag], x, nb, 64, dtype=np.float32)
    an = torch.from_numpy(an)
    dn = float((torch.from_numpy(an32.astype(np.float64)) - an).abs().max() / an.abs().max())
    log(f"{tag}: guidedig noise baseline: {m_guidedig.substeps} sub-steps, sum "
        f"{float(an.sum()):.6g} vs S(x)-S(b) {tgt.value - sbn:.6g}; float32 path vs float64 "
        f"max rel diff {dn:.2e}")
    grad_method("guidedig_noise", an, signed,
                "baseline=image(noise_baseline),steps=64,fraction=0.25,max_dist=0.02",
                keep_attr=not inc, extra=f"baseline_score={sbn:.9g} f32_vs_f64={dn:.3g}")
    a32, _ = m_guidedig(net32[tag], tgt32[tag], x, black, 64, dtype=np.float32)
    a32 = torch.from_numpy(a32.astype(np.float64))
    d = float((a32 - a).abs().max() / a.abs().max())
    l2 = float((a32 - a).norm() / a.norm())
    log(f"{tag}: guidedig float32 path vs float64: max rel diff {d:.2e}, rel L2 {l2:.2e}, "
        f"sum {float(a32.sum()):.6g}")
    if not inc:  # on inception torch's two agree to 3e-7 (size)
        W.put(f"{tag}.guidedig32.attr.f32", a32, tag, "guidedig-float32",
              "baseline=black,steps=64,fraction=0.25,max_dist=0.02", cls,
              f"max_rel_vs_float64={d:.3g} rel_l2_vs_float64={l2:.3g} sum={float(a32.sum()):.9g}")
    # guided_fraction 1: every feature moves each step, the path is the
    # straight line, and PAIR's algorithm is the left Riemann sum of IG,
    # a = (x - b) / steps * sum_{i<steps} g(b + i / steps (x - b)): a
    # continuous closed form the float32 library can match. From the
    # noise baseline: its first term is g(b), and at the constant BLACK
    # image g is tie-ridden (the float32 run of this port then differs from
    # the float64 one by 1.8e-3).
    a1, sb1 = m_guidedig(net, tgt, x, nb, 64, fraction=1.0)
    al = torch.arange(64, dtype=x.dtype) / 64
    xs = nb[None] + al.view(-1, 1, 1, 1) * (x - nb)[None]
    gl = torch.cat([grad(net, tgt, xs[i:i + 16]) for i in range(0, 64, 16)])
    left = (x - nb) * gl.mean(dim=0)
    d1 = float((torch.from_numpy(a1) - left).abs().max() / left.abs().max())
    log(f"{tag}: guidedig fraction 1 vs left-Riemann IG: max rel diff {d1:.2e}")
    assert d1 < 1e-9, d1
    grad_method("guidedig_f1", torch.from_numpy(a1), signed,
                "baseline=image(noise_baseline),steps=64,fraction=1,max_dist=0.02",
                keep_attr=not inc, extra=f"baseline_score={sb1:.9g}")

    # CAMs on the default layer
    A, g = layer_grad(net, tgt, x, cam_layer)
    lp = f"layer={cam_layer}"
    up = lambda cam: upsample(cam, h, w)
    gcam = up(m_gradcam(A, g))
    W.put(f"{tag}.gradcam.map.f32", gcam, tag, "gradcam", lp, cls)
    if not inc:  # guided map times gradcam map, both tested on inception (size)
        W.put(f"{tag}.guided-gradcam.map.f32", absmax(m_grad(net, tgt, x, "guided")) * gcam,
              tag, "guided-gradcam", lp, cls)
    W.put(f"{tag}.gradcam++.map.f32", up(m_gradcampp(A, g)), tag, "gradcam++", lp, cls)
    W.put(f"{tag}.layercam.map.f32", up(m_layercam(A, g)), tag, "layercam", lp, cls)
    W.put(f"{tag}.xgradcam.map.f32", up(m_xgradcam(A, g)), tag, "xgradcam", lp, cls)
    ecam, gap = m_eigencam(A)
    log(f"{tag}: eigencam: sigma2/sigma1 = {gap:.4f}")
    W.put(f"{tag}.eigencam.map.f32", up(ecam), tag, "eigencam", lp, cls,
          f"sigma2/sigma1={gap:.4f}")
    W.put(f"{tag}.scorecam.map.f32", up(m_scorecam(net, tgt, x, A, zero)), tag, "scorecam",
          lp + ",baseline=zero", cls)
    W.put(f"{tag}.ablationcam.map.f32", up(m_ablationcam(net, tgt, x, A, cam_layer)), tag,
          "ablationcam", lp, cls)
    win, st = occ
    W.put(f"{tag}.occlusion.map.f32", m_occlusion(net, tgt, x, zero, win, st), tag, "occlusion",
          f"window={win},stride={st},baseline=zero", cls,
          "windows at " + ",".join(map(str, windows(h, win, st))))

    # metrics on the grad map (the float32 map the C test reads)
    gmap32 = absmax(m_grad(net, tgt, x)).numpy().astype(np.float32)
    sig = max(h, w) / 10.0
    for kind, b in (("deletion", black), ("insertion", blur_chw(x, sig))):
        curve, area = metric(net, tgt, x, gmap32, kind, mstep, b)
        bl = "black" if kind == "deletion" else f"blur{sig:g}"
        W.put(f"{tag}.{kind}.curve.f32", curve, tag, kind,
              f"map=grad,steps={mstep},baseline={bl}", cls, f"area={area:.9g}")

    for (lname, ch, yy, xx) in extra_targets:
        t2 = Target(net, x, ch, lname, yy, xx)
        what = f"target={lname},class_index={ch},y={yy},x={xx}"
        W.value = t2.value
        fd2 = fd_check(net, t2, x)
        log(f"{tag}: layer target {what}: channel {t2.cls} value {t2.value:.9g}; finite "
            f"differences vs autograd {fd2:.2e}")
        assert fd2 < 1e-6, fd2
        sfx = "unit" if yy >= 0 else "mean"
        W.put(f"{tag}.grad_{sfx}.attr.f32", m_grad(net, t2, x), tag, "grad", what, t2.cls,
              "")
        W.put(f"{tag}.guided_{sfx}.attr.f32", m_grad(net, t2, x, "guided"), tag, "guided",
              what, t2.cls, "")
    return tgt


net32, tgt32 = {}, {}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="run the checks, write nothing")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    W = Writer(args.out, not args.check)

    # inception: logits against the zoo's reference
    inc = Net(INCEPTION)
    xi32 = np.fromfile(os.path.join(ROOT, "tests/zoo/inception_op13.in.f32"), dtype="<f4")
    xi32 = xi32.reshape(3, 64, 64)
    ref = np.fromfile(os.path.join(ROOT, "tests/zoo/inception_op13.logits.f32"), dtype="<f4")
    with torch.no_grad():
        lg = inc.run(torch.from_numpy(xi32.astype(np.float64))[None])[inc.output][0].numpy()
    err = np.abs(lg - ref).max() / np.abs(ref).max()
    log(f"inception: logits vs tests/zoo reference: max rel err {err:.2e}")
    assert err < 1e-5, err
    log(f"inception: normalization mean {inc.mean} std {inc.std} (no metadata: 0 and 1, "
        "as cnv_model_preprocess reads it)")

    fas = Net(FASHION)
    log(f"fashion: normalization mean {fas.mean} std {fas.std}")
    xf32 = fashion_image()

    for tag, net, x32 in (("fashion", fas, xf32), ("inception", inc, xi32)):
        n32 = Net(FASHION if tag == "fashion" else INCEPTION, torch.float32)
        net32[tag] = n32
        tgt32[tag] = Target(n32, torch.from_numpy(x32))

    run_model(W, "fashion", fas, xf32, "relu4", (7, 4), 6,
              [("relu3", -1, -1, -1), ("relu3", -1, 3, 10)])
    run_model(W, "inception", inc, xi32, "/b/Concat_output_0", (16, 10), 8, [])
    W.finish()


if __name__ == "__main__":
    main()
