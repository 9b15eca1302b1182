#!/usr/bin/env bash
# The tests that need live PyTorch (from_torch on modules, with and without an
# example input traced by torch.export; fixtures checked against torch itself):
# torch 2.13.0, a CPU build, into the environment the main test run used.  The
# converters never import torch: these tests only check against it.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
python3 -m pip install -q torch==2.13.0
python3 -m pytest -q tests/test_convert_torch.py tests/test_torch_export.py tests/test_torch_file.py
echo "torch: passed in $(( $(date +%s) - start )) s"
