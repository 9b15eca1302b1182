#!/usr/bin/env bash
# CI: the documentation site builds with warnings as errors (mkdocs build
# --strict), in a fresh virtual environment with the `docs` extra's packages.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/gru_infer_docs.XXXXXX)"
trap 'rm -rf "$work"' EXIT
python="${PYTHON:-python3}"

"$python" -m venv "$work/venv"
# The docs extra from pyproject.toml, without building gru_infer itself (the API
# pages read the sources); NumPy for the hook that renders `gru-infer --help`.
mapfile -t requirements < <("$python" - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(project["optional-dependencies"]["docs"] + ["numpy"]))
PY
)
"$work/venv/bin/pip" install -q "${requirements[@]}"
cd "$repo"
NO_MKDOCS_2_WARNING=1 "$work/venv/bin/mkdocs" build --strict --site-dir "$work/site"
echo "docs: $(find "$work/site" -name '*.html' | wc -l) pages built"
