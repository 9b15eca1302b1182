#!/usr/bin/env bash
# The C core under AddressSanitizer + UndefinedBehaviorSanitizer: a build with
# GRU_INFER_SANITIZE=1 in a scratch copy of the tree (the ordinary build is left
# alone), then the whole test suite against it.  Python itself is not
# instrumented, so libasan is preloaded; leak detection is off (the interpreter
# keeps memory until exit by design).  Any ASan report or UB aborts the run.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
git ls-files | cut -d/ -f1 | sort -u | xargs -I{} cp -r {} "$scratch"/  # the tracked tree
find "$scratch/src" \( -name '*.so' -o -name '_core.c' \) -delete
# An in-place build_ext needs the build requirements (pip's isolated builds left none behind).
python3 -m pip install -q "Cython>=3.0" "numpy>=2.0" "scipy>=1.9"
if ! (cd "$scratch" && GRU_INFER_SANITIZE=1 python3 setup.py build_ext --inplace -q \
        >"$scratch/build.log" 2>&1); then
    cat "$scratch/build.log"
    exit 1
fi
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
export LD_PRELOAD="$asan:$ubsan"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The Keras reader process inherits the preload; it drops its address-space
# cap under ASan (whose shadow memory needs terabytes of it), keeping the others.
export OMP_NUM_THREADS=2
# the suite must run the sanitized build, not an installed one
(cd "$scratch" && PYTHONPATH="$scratch/src" python3 -c "import sys, gru_infer.runtime._core as c; \
sys.exit(0 if c.__file__.startswith('$scratch/src/') else 'not the sanitized build: ' + c.__file__)")
(cd "$scratch" && PYTHONPATH="$scratch/src" python3 -m pytest -q -p no:cacheprovider tests)
echo "sanitizers: passed in $(( $(date +%s) - start )) s"
