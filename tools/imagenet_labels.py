#!/usr/bin/env python3
"""Writes weights/imagenet_labels.txt: the 1000 ImageNet-1k class names, one
per line in class order, as torchvision's classifiers name them (the
`categories` of their weights' metadata). `--preset imagenet` loads this
file for a model that carries no labels of its own.

Needs torchvision (python3-torchvision); run from the repository root:
    python3 tools/imagenet_labels.py
"""
import sys

from torchvision.models import ResNet18_Weights


def main():
    names = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    if len(names) != 1000 or any("\n" in n for n in names):
        sys.exit("unexpected category list from torchvision")
    with open("weights/imagenet_labels.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(names) + "\n")
    print(f"wrote weights/imagenet_labels.txt ({len(names)} classes)")


if __name__ == "__main__":
    main()
