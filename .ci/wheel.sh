#!/usr/bin/env bash
# CI: build and repair the x86_64 wheel (tools/build_wheels.sh), check what it
# carries, install it into a fresh virtual environment outside the tree and run
# the demo and the CLI from it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/gru_infer_wheel.XXXXXX)"
trap 'rm -rf "$work"' EXIT
python="${PYTHON:-python3}"

PYTHONS="$python" "$repo/tools/build_wheels.sh" "$work/wheelhouse"
wheel="$(ls "$work"/wheelhouse/gru_infer-*.whl)"
case "$(basename "$wheel")" in
    *-manylinux_*_x86_64.whl) ;;
    *) echo "not a manylinux x86_64 wheel: $(basename "$wheel")"; exit 1 ;;
esac

"$python" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
generated = [n for n in names if n.endswith((".c", ".pyx", ".pxd", ".h", ".html"))]
need = ["gru_infer/py.typed", "gru_infer/data/waveforms.safetensors"]
missing = [n for n in need if n not in names]
bundled = [n for n in names if n.startswith("gru_infer.libs/")]  # the core needs only glibc
license = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
if generated or missing or bundled or not license:
    sys.exit(f"wheel: sources {generated}, missing {missing}, bundled {bundled}, license {license}")
print(f"wheel contents ok: {len(names)} files, no bundled libraries")
PY

"$python" -m venv "$work/venv"
cd "$work"  # nowhere near the source tree
"$work/venv/bin/pip" install -q "$wheel"
"$work/venv/bin/python" -c "import gru_infer; print(gru_infer.__file__)"
# debug info stripped: no .debug_info section left in the extension
so="$(ls "$work"/venv/lib/python3*/site-packages/gru_infer/runtime/_core*.so)"
if readelf -S "$so" | grep -q debug_info; then echo "not stripped: $so"; exit 1; fi
echo "extension: $(du -k "$so" | cut -f1) KiB, stripped"
"$work/venv/bin/gru-infer" --version
"$work/venv/bin/gru-infer" info --system
"$work/venv/bin/gru-infer" demo --seed 1
# `python -m gru_infer` is the CLI; a reader that has gone (`| head`) ends it
# quietly with 141, as SIGPIPE ends a C tool: no traceback.
set +o pipefail
"$work/venv/bin/python" -m gru_infer demo --seed 2 2> "$work/pipe.err" | true
status=${PIPESTATUS[0]}
set -o pipefail
if [[ "$status" != 141 || -s "$work/pipe.err" ]]; then
    echo "demo into a closed pipe: status $status, stderr:"; cat "$work/pipe.err"; exit 1
fi
echo "demo into a closed pipe: quiet, status 141"
