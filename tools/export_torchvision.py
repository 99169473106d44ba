#!/usr/bin/env python3
"""Exports a torchvision classifier to ONNX with the metadata cnnviz reads,
so that `cnnviz ... -m OUT.onnx` needs no other option:

    python3 tools/export_torchvision.py resnet18 resnet18.onnx
    python3 tools/export_torchvision.py mobilenet_v3_small m.onnx --weights DEFAULT

The weights: `--weights DEFAULT` (or a name such as IMAGENET1K_V2) takes
torchvision's pretrained ones, which torchvision downloads once into
~/.cache/torch; `--state-dict FILE` loads a checkpoint of your own; with
neither the network keeps its random initialization (useful only to try
the pipeline). The metadata written: cnnviz.mean and cnnviz.std (ImageNet's,
as torchvision's evaluation transform), cnnviz.image_size (224x224, 299x299
for inception_v3) and cnnviz.labels (the weights' category names, else
weights/imagenet_labels.txt).

Needs python3-torch, python3-torchvision and python3-onnx (Debian). Not
needed to build or test libcnnviz.
"""
import argparse
import os
import sys

import onnx
import torch
import torchvision


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("arch", help="a torchvision.models classifier name, e.g. resnet18")
    ap.add_argument("out", help="the ONNX file to write")
    ap.add_argument("--weights", help="torchvision weights name (DEFAULT, IMAGENET1K_V1, ...)")
    ap.add_argument("--state-dict", help="a checkpoint (state_dict) to load instead")
    ap.add_argument("--opset", type=int, default=13)
    args = ap.parse_args()

    try:
        builder = torchvision.models.get_model_builder(args.arch)
    except ValueError:
        sys.exit(f"unknown torchvision model '{args.arch}' "
                 f"(torchvision.models.list_models() lists them)")
    weights = None
    if args.weights:
        try:
            weights = torchvision.models.get_model_weights(args.arch)[args.weights]
        except KeyError:
            names = [w.name for w in torchvision.models.get_model_weights(args.arch)]
            sys.exit(f"{args.arch} has no weights '{args.weights}' (DEFAULT, {', '.join(names)})")
    try:
        model = builder(weights=weights)
    except OSError as e:  # the download, offline
        sys.exit(f"cannot get the {args.weights} weights of {args.arch}: {e}")
    if args.state_dict:
        model.load_state_dict(torch.load(args.state_dict, map_location="cpu"))
    model.eval()

    size = 299 if args.arch.startswith("inception") else 224
    x = torch.zeros(1, 3, size, size)
    torch.onnx.export(model, x, args.out, opset_version=args.opset, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})

    if weights is not None:
        labels = weights.meta["categories"]
    else:
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "..", "weights", "imagenet_labels.txt"), encoding="utf-8") as f:
            labels = f.read().splitlines()
    m = onnx.load(args.out)
    meta = {
        "cnnviz.mean": "0.485,0.456,0.406",
        "cnnviz.std": "0.229,0.224,0.225",
        "cnnviz.image_size": f"{size}x{size}",
        "cnnviz.labels": "\n".join(labels),
    }
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, args.out)
    print(f"wrote {args.out}: {args.arch}, {size}x{size}, {len(labels)} classes, weights "
          f"{args.weights or args.state_dict or 'random (no --weights)'}")


if __name__ == "__main__":
    main()
