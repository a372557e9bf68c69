#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks for the JAX benchmark (it has JAX, PyTorch,
# numpy, h5py, rich, absl-py, ml-dtypes and packaging, but no Keras and no network).
# Keras's other needs there: namex and optree. No TensorFlow. About 3 MB in all.
# The folder is git-ignored (.git/info/exclude) and travels with the device tool's `carry`.
set -euo pipefail
dest=$(dirname "$0")/wheels
mkdir -p "$dest"
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dest" keras==3.15.1 namex==0.1.0 optree==0.20.0
ls -l "$dest"
