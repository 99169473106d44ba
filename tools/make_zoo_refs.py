#!/usr/bin/python3
"""Writes tests/zoo/: small versions of the CNN families users bring, as ONNX
files with random weights and non-trivial BatchNorm statistics, and
PyTorch's logits and input gradient for a fixed input, which
tests/test_zoo.c checks libcnnviz against.

For developers only (the tests read the files it wrote, committed):
needs Debian's python3-torch, python3-torchvision and python3-onnx.
    /usr/bin/python3 tools/make_zoo_refs.py [tests/zoo]

Each family is torchvision's own architecture at a reduced width and depth
(a few hundred KB each), exported by torch.onnx at the opsets given. Also:
a Keras-style model whose input is NHWC (a Transpose first), float16 models
(every tensor FLOAT16; and float inputs with FLOAT16 weights behind Cast
nodes), and a Caffe-style model with LRN and a fixed 1x3x131x131 input, as in
the classic ONNX model zoo.

The references are computed in float64 from the float32 weights (for the
float16 models, from the weights rounded to float16), so they are exact up
to float64 rounding. The same computation in float32 is done too, and its
distance to float64 is written to the manifest: it is the floor any float32
engine has on that model and input, and the test's tolerances stay well
above it.

Manifest (tests/zoo/MANIFEST), one model per line:
    name layout N C H W class logits_floor grad_floor
layout is NCHW or NHWC (the file's input); N C H W are the reference input's
sizes (NHWC files take N H W C); class is the logit whose gradient is stored.
Files: name.onnx, name.in.f32 (the input as the file takes it),
name.logits.f32, name.grad.f32 (d logit[class] / d input, same layout).
"""
import copy
import io
import os
import sys

import numpy as np
import onnx
import onnx.numpy_helper as nh
import torch
import torch.nn as nn
import torch.nn.utils.fusion
import torchvision.models as tvm
from torchvision.models import convnext, efficientnet, regnet, shufflenetv2
from torchvision.models.googlenet import Inception
from torchvision.ops.misc import Conv2dNormActivation

SIZE = 64  # the reference input is 1x3xSIZExSIZE unless a model fixes its own


def seeded(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)


def randomize_norms(m):
    """BatchNorm with statistics and affine terms far from the identity, so
    that folding or ignoring any of them would show."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return m.eval()


def small_head(m, features_attr, channels, classes=10):
    """Replaces a family's wide last 1x1 convolution (1280 channels
    whatever the width) and its classifier by narrower ones."""
    feats = getattr(m, features_attr)
    last = feats[-1]
    conv = last[0]
    act = type(last[2]) if len(last) > 2 else nn.ReLU
    feats[-1] = Conv2dNormActivation(conv.in_channels, channels, kernel_size=1,
                                     norm_layer=nn.BatchNorm2d, activation_layer=act)
    return channels


# ------------------------------------------------------------- the families

def mobilenet_v2():
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2], [6, 64, 2, 2], [6, 96, 1, 1],
               [6, 160, 1, 2], [6, 320, 1, 1]]
    m = tvm.MobileNetV2(num_classes=10, width_mult=0.35, inverted_residual_setting=setting)
    c = small_head(m, "features", 160)
    m.classifier[1] = nn.Linear(c, 10)
    return m


def mobilenet_v3_small():
    m = tvm.mobilenet_v3_small(width_mult=0.25, num_classes=10)
    m.classifier[0] = nn.Linear(m.classifier[0].in_features, 64)
    m.classifier[3] = nn.Linear(64, 10)
    return m


def efficientnet_b0():
    setting, last = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.2, depth_mult=0.25)
    return efficientnet.EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=160)


def regnet_y():
    params = regnet.BlockParams.from_init_params(depth=6, w_0=16, w_a=8.0, w_m=2.0, group_width=8,
                                                 se_ratio=0.25)
    return regnet.RegNet(params, num_classes=10, stem_width=16)


def mnasnet():
    m = tvm.MNASNet(alpha=0.2, num_classes=10)
    # layers[-3:] are the 1280-channel conv, its BN and ReLU
    m.layers[-3] = nn.Conv2d(m.layers[-3].in_channels, 160, 1, bias=False)
    m.layers[-2] = nn.BatchNorm2d(160)
    m.classifier[1] = nn.Linear(160, 10)
    return m


def shufflenet_v2():
    return shufflenetv2.ShuffleNetV2([2, 2, 2], [24, 24, 48, 96, 256], num_classes=10)


def convnext_tiny():
    cfg = [convnext.CNBlockConfig(16, 32, 1), convnext.CNBlockConfig(32, 64, 1),
           convnext.CNBlockConfig(64, None, 2)]
    m = convnext.ConvNeXt(cfg, stochastic_depth_prob=0.0, num_classes=10)
    # layer_scale starts at 1e-6, which would hide every block's branch
    for mod in m.modules():
        if isinstance(mod, convnext.CNBlock):
            with torch.no_grad():
                mod.layer_scale.uniform_(0.5, 1.5)
    return m


class MiniInception(nn.Module):
    """GoogLeNet's shape at a small width: a stem, two Inception blocks
    (four branches concatenated), a max pool between them, global average
    pooling and a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, ceil_mode=True))
        self.a = Inception(16, 8, 8, 12, 4, 8, 4)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.b = Inception(32, 12, 8, 16, 4, 8, 8)
        self.fc = nn.Linear(44, 10)

    def forward(self, x):
        x = self.b(self.pool(self.a(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class CaffeNetLRN(nn.Module):
    """The classic model zoo's style (CaffeNet, AlexNet): an 11x11 stride-4
    conv, ReLU, LRN, max pool twice, then fully connected layers on a
    flattened map, so the input size is fixed (131x131, batch 1: larger
    than the 128-pixel tiles the layer sheet uses by default)."""

    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, 16, 11, 4), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0),
                               nn.MaxPool2d(3, 2), nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(),
                               nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0), nn.MaxPool2d(3, 2))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(24 * 7 * 7, 32), nn.ReLU(), nn.Dropout(), nn.Linear(32, 10))

    def forward(self, x):
        return self.fc(self.f(x))


class KerasNHWC(nn.Module):
    """A Keras export's shape: NHWC in, a Transpose to NCHW first, then a
    small convolutional network."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x.permute(0, 3, 1, 2))


# name: (builder, opsets, layout, fixed input shape or None)
FAMILIES = {
    "mobilenet_v2": (mobilenet_v2, [9, 13], "NCHW", None),
    "mobilenet_v3_small": (mobilenet_v3_small, [13, 17], "NCHW", None),
    "efficientnet_b0": (efficientnet_b0, [13], "NCHW", None),
    "regnet_y": (regnet_y, [13], "NCHW", None),
    "mnasnet": (mnasnet, [13], "NCHW", None),
    "shufflenet_v2": (shufflenet_v2, [11, 13], "NCHW", None),
    "convnext": (convnext_tiny, [13, 17], "NCHW", None),
    "inception": (MiniInception, [13], "NCHW", None),
    "caffenet_lrn": (CaffeNetLRN, [9], "NCHW", (1, 3, 131, 131)),
    "keras_nhwc": (KerasNHWC, [13], "NHWC", None),
}


def caffenet_onnx(m, x):
    """CaffeNetLRN written as the old model zoo's files are: LRN as one
    node (torch.onnx would decompose it), opset 9, a fixed batch 1 input."""
    H = onnx.helper
    f, fc = m.f, m.fc
    inits = []

    def weight(name, t):
        inits.append(nh.from_array(t.detach().numpy().astype(np.float32), name))
        return name

    def conv(i, src, dst, stride, pad):
        c = f[i]
        return H.make_node("Conv", [src, weight(f"conv{i}_w", c.weight), weight(f"conv{i}_b", c.bias)], [dst],
                           kernel_shape=list(c.kernel_size), strides=list(c.stride), pads=[pad] * 4,
                           name=f"conv{i}")

    def lrn(i, src, dst):
        n = f[i]
        return H.make_node("LRN", [src], [dst], size=n.size, alpha=n.alpha, beta=n.beta, bias=n.k,
                           name=f"norm{i}")

    nodes = [conv(0, "data", "c1", 4, 0), H.make_node("Relu", ["c1"], ["r1"], name="relu1"), lrn(2, "r1", "n1"),
             H.make_node("MaxPool", ["n1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], name="pool1"),
             conv(4, "p1", "c2", 1, 1), H.make_node("Relu", ["c2"], ["r2"], name="relu2"), lrn(6, "r2", "n2"),
             H.make_node("MaxPool", ["n2"], ["p2"], kernel_shape=[3, 3], strides=[2, 2], name="pool2"),
             H.make_node("Flatten", ["p2"], ["flat"], axis=1, name="flatten"),
             H.make_node("Gemm", ["flat", weight("fc1_w", fc[1].weight), weight("fc1_b", fc[1].bias)], ["f1"],
                         transB=1, name="fc6"),
             H.make_node("Relu", ["f1"], ["r3"], name="relu6"),
             H.make_node("Dropout", ["r3"], ["d3"], ratio=0.5, name="drop6"),
             H.make_node("Gemm", ["d3", weight("fc2_w", fc[4].weight), weight("fc2_b", fc[4].bias)], ["logits"],
                         transB=1, name="fc7")]
    g = H.make_graph(nodes, "caffenet_lrn", [H.make_tensor_value_info("data", onnx.TensorProto.FLOAT, list(x.shape))],
                     [H.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 10])], inits)
    return H.make_model(g, opset_imports=[H.make_opsetid("", 9)], producer_name="make_zoo_refs")


def export(m, x, opset, dynamic):
    f = io.BytesIO()
    axes = None
    if dynamic:
        axes = {"input": {0: "batch", 2: "height", 3: "width"} if x.dim() == 4 else {0: "batch"},
                "logits": {0: "batch"}}
        if dynamic == "NHWC":
            axes["input"] = {0: "batch", 1: "height", 2: "width"}
    torch.onnx.export(m, x, f, opset_version=opset, input_names=["input"], output_names=["logits"],
                      dynamic_axes=axes, do_constant_folding=True)
    return onnx.load_from_string(f.getvalue())


def logits_and_grad(m, x, dtype, cls=None):
    m = m.to(dtype)
    xr = x.to(dtype).clone().requires_grad_(True)
    y = m(xr)
    k = int(y[0].argmax()) if cls is None else cls
    y[0, k].backward()
    return y.detach().double().numpy(), xr.grad.double().numpy(), k


def rel(a, b):
    return float(np.linalg.norm((a - b).ravel()) / max(np.linalg.norm(b.ravel()), 1e-300))


def max_rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def write(out, name, model, x, logits, grad, cls, layout, floors):
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, name + ".onnx"))
    x.numpy().astype("<f4").tofile(os.path.join(out, name + ".in.f32"))
    logits.astype("<f4").tofile(os.path.join(out, name + ".logits.f32"))
    grad.astype("<f4").tofile(os.path.join(out, name + ".grad.f32"))
    size = os.path.getsize(os.path.join(out, name + ".onnx"))
    print(f"{name:28s} {size / 1024:7.0f} KB  class {cls}  float32 floor: logits {floors[0]:.1e}, "
          f"gradient {floors[1]:.1e}")
    dims = " ".join(str(d) for d in x.shape)
    return f"{name} {layout} {dims} {cls} {floors[0]:.3e} {floors[1]:.3e}"


def to_float16(model, with_casts):
    """The model with FLOAT16 weights: every tensor FLOAT16 (with_casts 0),
    or float inputs and outputs with each weight read through a Cast to
    FLOAT (with_casts 1, as converters that keep I/O types do)."""
    g = model.graph
    new_inits, casts = [], []
    for t in g.initializer:
        a = nh.to_array(t)
        if a.dtype != np.float32:
            new_inits.append(t)
            continue
        h = nh.from_array(a.astype(np.float16), t.name + ("_fp16" if with_casts else ""))
        new_inits.append(h)
        if with_casts:
            casts.append(onnx.helper.make_node("Cast", [h.name], [t.name], to=onnx.TensorProto.FLOAT,
                                               name=t.name + "_cast"))
    del g.initializer[:]
    g.initializer.extend(new_inits)
    if with_casts:
        nodes = list(g.node)
        del g.node[:]
        g.node.extend(casts + nodes)
    else:
        for v in list(g.input) + list(g.output):
            v.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.t.data_type == onnx.TensorProto.FLOAT:
                        a.t.CopyFrom(nh.from_array(nh.to_array(a.t).astype(np.float16), a.t.name))
        del g.value_info[:]
    return model


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/zoo"
    os.makedirs(out, exist_ok=True)
    lines = []
    for i, (fam, (build, opsets, layout, fixed)) in enumerate(FAMILIES.items()):
        seeded(1000 + i)
        m = randomize_norms(build())
        for p in m.parameters():
            p.requires_grad_(False)
        shape = fixed or ((1, SIZE, SIZE, 3) if layout == "NHWC" else (1, 3, SIZE, SIZE))
        x = torch.randn(*shape)
        y64, g64, k = logits_and_grad(m, x, torch.float64)
        y32, g32, _ = logits_and_grad(m, x, torch.float32, k)
        m = m.float()
        floors = (max_rel(y32, y64), rel(g32, g64))
        for opset in opsets:
            model = caffenet_onnx(m, x) if fam == "caffenet_lrn" else export(m, x, opset, None if fixed else layout)
            lines.append(write(out, f"{fam}_op{opset}", model, x, y64, g64, k, layout, floors))
        if fam == "mobilenet_v2":
            # float16 weights, exactly: BatchNorm fused into the convolutions
            # here (not by the exporter, whose fused weights would then be
            # rounded), every parameter rounded to float16, the reference
            # run on those values
            h = fuse_batchnorm(copy.deepcopy(m))
            with torch.no_grad():
                for p in h.parameters():
                    p.copy_(p.half().float())
            y64h, g64h, kh = logits_and_grad(h, x, torch.float64)
            y32h, g32h, _ = logits_and_grad(h, x, torch.float32, kh)
            h = h.float()
            floors_h = (max_rel(y32h, y64h), rel(g32h, g64h))
            for with_casts in (0, 1):
                model = to_float16(export(h, x, 13, layout), with_casts)
                lines.append(write(out, f"mobilenet_v2_fp16{'_cast' if with_casts else ''}", model, x, y64h,
                                   g64h, kh, layout, floors_h))
    with open(os.path.join(out, "MANIFEST"), "w") as f:
        f.write("# written by tools/make_zoo_refs.py: name layout N C H W class logits_floor grad_floor\n")
        f.write("\n".join(lines) + "\n")


def fuse_batchnorm(m):
    """Every Conv2d directly followed by a BatchNorm2d in a Sequential
    becomes one Conv2d (eval mode), the BatchNorm an Identity."""
    for mod in m.modules():
        if isinstance(mod, nn.Sequential):
            for k in range(len(mod) - 1):
                if isinstance(mod[k], nn.Conv2d) and isinstance(mod[k + 1], nn.BatchNorm2d):
                    mod[k] = torch.nn.utils.fusion.fuse_conv_bn_eval(mod[k], mod[k + 1])
                    mod[k + 1] = nn.Identity()
    return m


if __name__ == "__main__":
    main()
