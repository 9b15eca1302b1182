#!/usr/bin/env bash
# A bounded fuzzing campaign over every reader (tools/fuzz.py): SECONDS_PER_FORMAT
# seconds each (default 10: under 2 minutes for the 10 formats), a seed that changes per run
# unless FUZZ_SEED is set.  Fails on any finding: a crash, a hang, a foreign
# exception type.  Findings are left in $FUZZ_OUT/findings with the seed and
# iteration that make them again; add them to tests/fixtures/regressions/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SECONDS_PER_FORMAT:-10}
seed=${FUZZ_SEED:-$(date +%s)}
out=${FUZZ_OUT:-$(mktemp -d)}
start=$(date +%s)
echo "fuzz: seed $seed, $seconds s per format, findings to $out"
python3 tools/fuzz.py --format all --seconds "$seconds" --seed "$seed" --out "$out"
echo "fuzz: no findings in $(( $(date +%s) - start )) s"
