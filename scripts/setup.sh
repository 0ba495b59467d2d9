#!/usr/bin/env bash
# Create .venv (or reuse it) and install embedding-trainer with its test extras.
# Usage: bash scripts/setup.sh         (from the repository root)
# Torch is installed first, pinned to the build named by TORCH_SPEC (default torch==2.13.0: on the
# project's CPU machines this takes the local CPU build instead of several GB of CUDA packages).
# Every install is held to CONSTRAINTS (default constraints.txt: the exact versions CI tests with, on
# Python 3.11; its torch line too, so a TORCH_SPEC must allow that version). CONSTRAINTS=/dev/null
# takes the newest versions pyproject.toml allows instead (untested; e.g. on Python 3.10).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
CONSTRAINTS=${CONSTRAINTS:-constraints.txt}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c "$CONSTRAINTS" "$TORCH_SPEC"
.venv/bin/python -m pip install --quiet -c "$CONSTRAINTS" -e ".[test]"
echo "Installed into .venv: $(.venv/bin/python -c 'import torch, sentence_transformers as st; print("torch", torch.__version__, "| sentence-transformers", st.__version__)')"
