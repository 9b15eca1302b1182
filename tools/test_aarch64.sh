#!/usr/bin/env bash
# The C test driver (tests/c/test_core.c, no Python) cross-compiled for aarch64 with
# Debian's gcc-aarch64-linux-gnu and run under qemu-aarch64:
#   -cpu max:         every kernel set (neon_dotprod, neon, generic), every precision;
#   -cpu cortex-a53:  a CPU without the dot-product instructions: neon_dotprod must say
#                     so, and the neon set must run there (nothing newer slipped into it).
# Usage: tools/test_aarch64.sh [test_core arguments, e.g. --quick or kernel set names]
# Needs: aarch64-linux-gnu-gcc, qemu-aarch64 (or qemu-aarch64-static).  About a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

CC=${CC_AARCH64:-aarch64-linux-gnu-gcc}
QEMU=${QEMU_AARCH64:-$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)}
if ! command -v "$CC" >/dev/null || [ -z "$QEMU" ]; then
    echo "test_aarch64: needs $CC and qemu-aarch64 (Debian: apt-get install gcc-aarch64-linux-gnu qemu-user)" >&2
    exit 2
fi
run() { "$QEMU" -L /usr/aarch64-linux-gnu "$@"; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$CC" -O2 -std=gnu99 -Wall -Wextra -Werror -static -pthread -Isrc_c \
    tests/c/test_core.c src_c/*.c -lm -o "$out/test_core"

start=$(date +%s)
run -cpu max "$out/test_core" "$@"
run -cpu max "$out/test_core" --list | grep -qx "neon_dotprod 1" \
    || { echo "FAIL: -cpu max should report the dot-product set" >&2; exit 1; }
run -cpu cortex-a53 "$out/test_core" --list | grep -qx "neon_dotprod 0" \
    || { echo "FAIL: cortex-a53 has no dot-product instructions, the driver says it has" >&2; exit 1; }
run -cpu cortex-a53 "$out/test_core" --quick neon
echo "test_aarch64: ok ($(( $(date +%s) - start )) s under $QEMU)"
