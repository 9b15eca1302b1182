#!/usr/bin/env bash
# CI: the C core on aarch64 (NEON, NEON dot-product, generic; float32, bf16, int8):
# tools/test_aarch64.sh cross-compiles the C test driver and runs it under qemu.
# Installs Debian's cross compiler and qemu-user when they are missing and apt-get
# is there; without apt-get it skips with a message.  A few minutes at most.
set -euo pipefail
cd "$(dirname "$0")/.."

have_tools() {
    command -v aarch64-linux-gnu-gcc >/dev/null &&
        { command -v qemu-aarch64 >/dev/null || command -v qemu-aarch64-static >/dev/null; }
}
if ! have_tools; then
    if ! command -v apt-get >/dev/null; then
        echo "aarch64: skipped: no apt-get here to install gcc-aarch64-linux-gnu and qemu-user"
        exit 0
    fi
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    # A machine that cannot install them (no package mirror, no sudo) skips with the
    # reason; one that installs them runs the driver, and its failures fail CI.
    if ! { $sudo apt-get update -qq &&
           DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user; }; then
        echo "aarch64: skipped: apt-get could not install gcc-aarch64-linux-gnu and qemu-user here"
        exit 0
    fi
fi
bash tools/test_aarch64.sh
