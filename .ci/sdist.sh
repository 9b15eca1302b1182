#!/usr/bin/env bash
# CI: the sdist is complete and clean.  Build it, check what it carries, install
# it into a fresh virtual environment outside the tree, and run the test suite
# from the unpacked sdist against the installed package (not the source tree).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/gru_infer_sdist.XXXXXX)"
trap 'rm -rf "$work"' EXIT
python="${PYTHON:-python3}"

"$python" -m venv "$work/venv"
venv="$work/venv/bin"
"$venv/pip" install -q --upgrade pip build
"$venv/python" -m build --sdist -o "$work/dist" "$repo"
sdist="$(ls "$work"/dist/gru_infer-*.tar.gz)"
echo "sdist: $(basename "$sdist") $(du -k "$sdist" | cut -f1) KiB"

# What a build and the tests need is there; nothing generated is.
"$venv/python" - "$sdist" <<'PY'
import sys, tarfile
names = [n.split("/", 1)[1] for n in tarfile.open(sys.argv[1]).getnames() if "/" in n]
need = ["LICENSE", "README.md", "pyproject.toml", "setup.py", "src_c/gru.h", "src_c/gru.c",
        "src/gru_infer/runtime/_core.pyx", "src/gru_infer/runtime/_core.pxd",
        "src/gru_infer/py.typed", "src/gru_infer/data/waveforms.safetensors",
        "tests/conftest.py", "tests/test_cli.py", "tests/fixtures/torch/manifest.json",
        "benchmarks/peers/gru_infer_engine.py", "tools/fuzz.py"]
missing = [n for n in need if n not in names]
generated = [n for n in names if n.endswith((".so", ".o", ".pyc", ".html"))
             or (n.startswith("src/gru_infer/") and n.endswith(".c"))]
if missing or generated:
    sys.exit(f"sdist: missing {missing}, generated files {generated}")
print(f"sdist contents ok: {len(names)} entries")
PY

"$venv/pip" install -q "$sdist[test]"
mkdir "$work/src" && tar xzf "$sdist" -C "$work/src"
cd "$work/src"/gru_infer-*/
# The suite runs from the unpacked sdist: src/ layout, so `import gru_infer` is
# the installed package (checked), with its compiled core.
"$venv/python" -c "import gru_infer, sys; f = gru_infer.__file__; print('testing', f); \
sys.exit(0 if '/site-packages/' in f else 'not the installed package: ' + f)"
"$venv/python" -m pytest -q -p no:cacheprovider
