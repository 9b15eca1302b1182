"""CLI: python -m benchmarks.run [--threads 1,2] [--workloads W1,W2,W3,W4,sweep] [--quick] [--out DIR]

Runs benchmarks.worker once per thread count, each in a fresh interpreter whose
environment fixes OMP/OpenBLAS/MKL thread counts before anything is imported,
then merges the workers' JSON into <out>/results.json, <out>/results.md and
<out>/latency.png, and prints the Markdown.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from .report import markdown

REPO = Path(__file__).resolve().parent.parent
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
KNOWN = ("W1", "W2", "W3", "W4", "sweep")


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    return {"cpu": cpu_model(), "cores": affinity, "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "python": sys.executable}


def run_worker(threads: int, part: str, workloads: str, quick: bool) -> dict:
    env = dict(os.environ)
    env.update({k: str(threads) for k in THREAD_ENV})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "worker.json"
        cmd = [sys.executable, "-m", "benchmarks.worker", "--threads", str(threads),
               "--part", part, "--workloads", workloads, "--json", str(out)] + (["--quick"] if quick else [])
        subprocess.run(cmd, env=env, cwd=REPO, check=True)  # progress goes to stderr
        return json.loads(out.read_text())


def run_thread_count(threads: int, workloads: str, quick: bool) -> dict:
    """Floors, then each engine, each in a process of its own.

    One process per engine, not just per thread count: idle BLAS/OpenMP/ORT
    worker pools keep spinning for a while after a call, and on a machine with
    few cores one engine's spinning pool would steal the cores of the next.
    """
    from .peers import load_all

    run = {"threads": threads, "parts": [], "results": [], "sweep": [], "skipped": [], "errors": []}
    for part in ("floors",) + tuple(m.NAME for m in load_all()):
        doc = run_worker(threads, part, workloads, quick)
        run["parts"].append({k: doc[k] for k in ("part", "env", "loadavg_before", "loadavg_after")})
        for key in ("results", "sweep", "skipped", "errors"):
            run[key] += doc[key]
        if part == "floors":
            run["floors"], run["versions"] = doc["floors"], doc["versions"]
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1,<all cores>)")
    p.add_argument("--workloads", default=",".join(KNOWN),
                   help="comma-separated subset of " + ",".join(KNOWN) + " (the tiny-model overhead always runs)")
    p.add_argument("--quick", action="store_true", help="few repeats: a fast smoke run, not numbers to quote")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)

    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in KNOWN]
    if unknown:
        p.error(f"unknown workloads {unknown}; choose from {list(KNOWN)}")
    cores = machine()["cores"]
    threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, cores})

    doc = {"command": "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
           "started": datetime.datetime.now().isoformat(timespec="seconds"),
           "machine": machine(), "thread_counts": threads, "workloads": wanted, "quick": args.quick, "runs": []}
    for n in threads:
        doc["runs"].append(run_thread_count(n, ",".join(wanted), args.quick))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    md = markdown(doc)
    try:
        from .plot import plot

        plot(doc, out / "latency.png")
        md += f"\nPlot: {out / 'latency.png'}\n"
    except ImportError as exc:  # matplotlib missing: the tables still stand
        md += f"\nNo plot: {exc}\n"
    (out / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
