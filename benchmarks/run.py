"""CLI: python -m benchmarks.run [--threads 1,2] [--workloads W1,W2,W3,W4,sweep] [--quick] [--out DIR]
                                  [--contention] [--rounds N] [--readme]

Runs benchmarks.worker once per thread count, each in a fresh interpreter whose
environment fixes OMP/OpenBLAS/MKL thread counts before anything is imported,
then merges the workers' JSON into <out>/results.json, <out>/results.md and
<out>/latency.png, and prints the Markdown.

--contention adds W1 and W2 at each engine's default thread settings three ways:
quiet; with the engines at nice 10 while one nice-0 busy loop holds a core; and at
equal priority with every core held by a busy loop; reported as p50 against quiet p50.

--readme also rewrites the table between README.md's benchmark-table markers.
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
import time
from pathlib import Path

import numpy as np

from .report import markdown, readme_summary

REPO = Path(__file__).resolve().parent.parent
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
KNOWN = ("W1", "W2", "W3", "W4", "sweep")
README_MARKERS = ("<!-- benchmark-table:start -->", "<!-- benchmark-table:end -->")


def write_readme_table(readme: Path, table: str) -> None:
    text = readme.read_text()
    start, end = README_MARKERS
    head, sep, rest = text.partition(start)
    _, sep2, tail = rest.partition(end)
    if not (sep and sep2):
        raise SystemExit(f"{readme}: the markers {start} and {end} are not there; table not written")
    readme.write_text(f"{head}{start}\n{table.strip()}\n{end}{tail}")


def cpu_details() -> str:
    """The SIMD features and cache sizes that decide which kernels run and how fast."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16",
              "avx512_vnni", "avx_vnni", "amx_tile", "asimd", "sve")
    caches = []
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")) if base.exists() else []:
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind != "Instruction":
            caches.append(f"L{level}{'d' if kind == 'Data' else ''} {size}")
    return " ".join(f for f in wanted if f in flags) + ("; " + ", ".join(caches) if caches else "")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
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
    return {"cpu": cpu_model(), "cpu_details": cpu_details(), "cores": affinity,
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.executable}


def run_worker(threads: int, part: str, workloads: str, quick: bool, nice: int = 0,
               rounds: int = 1) -> dict:
    """threads 0: each engine's defaults (no thread variables set)."""
    env = dict(os.environ)
    for k in THREAD_ENV:
        env.pop(k, None)
    if threads > 0:
        env.update({k: str(threads) for k in THREAD_ENV})
    # this checkout's benchmarks and gru_infer (src layout), ahead of any installed one
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(REPO / "src"), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "worker.json"
        cmd = [sys.executable, "-m", "benchmarks.worker", "--threads", str(threads),
               "--part", part, "--workloads", workloads, "--json", str(out), "--rounds", str(rounds)]
        cmd += ["--quick"] if quick else []
        if nice:
            cmd = ["nice", "-n", str(nice)] + cmd
        subprocess.run(cmd, env=env, cwd=REPO, check=True)  # progress goes to stderr
        return json.loads(out.read_text())


BUSY_LOOP = "while True: pass"
CONTENTION = (
    ("quiet", "nothing else running (from this harness)", 0, 0),
    ("niced", "engines at nice 10, one nice-0 busy loop holds a core", 10, 1),
    ("equal", "engines at nice 0, one nice-0 busy loop per core", 0, None),
)


def run_contention(workloads: str, quick: bool, cores: int) -> dict:
    """W1/W2 per engine at its default thread settings, quiet and under two kinds of load
    (`quiet` means: no load from this harness; the report records the load average)."""
    from .peers import load_all

    # every engine at its defaults (threads 0), and gru_infer at 1 thread too: its default
    # must be no slower than that under load
    engines = [(m.NAME, 0) for m in load_all() if m.NAME not in ("numpy_ref",)]
    engines.insert(1, ("gru_infer", 1))
    doc = {"scenarios": [], "results": [], "errors": []}
    for name, what, nice, loops in CONTENTION:
        n_loops = cores if loops is None else loops
        doc["scenarios"].append({"name": name, "what": what, "busy_loops": n_loops, "nice": nice})
        busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n_loops)]
        try:
            time.sleep(0.5 if busy else 0)
            for engine, threads in engines:
                label = engine if threads == 0 else f"{engine} ({threads} thr)"
                try:
                    part = run_worker(threads, engine, workloads, quick, nice=nice)
                except subprocess.CalledProcessError as exc:
                    doc["errors"].append(f"{name} {label}: {exc}")
                    continue
                for r in part["results"]:
                    if "p50_ns" in r:
                        doc["results"].append({"scenario": name, "engine": label,
                                               "workload": r["workload"], "p50_ns": r["p50_ns"],
                                               "p99_ns": r["p99_ns"], "variant": r.get("variant", ""),
                                               "loadavg": part["loadavg_after"][0]})
                doc["errors"] += part["errors"]
        finally:
            for p in busy:
                p.kill()
                p.wait()
    return doc


def merge_round(rows: list, new: list) -> None:
    """Adds one round's results to the first round's rows: raw times pooled, summary redone."""
    from .timing import summarize

    for r in new:
        old = next((o for o in rows if (o["workload"], o["engine"]) == (r["workload"], r["engine"])), None)
        if old is None or "times_ns" not in old or "times_ns" not in r:
            continue
        old["times_ns"] += r["times_ns"]
        old.update(summarize(np.array(old["times_ns"], np.int64)))
        if "seq_per_s" in old:
            old["seq_per_s"] = old["batch"] * 1e9 / old["p50_ns"]
        if "GFLOPs" in old:
            old["GFLOPs"] = r["GFLOPs"] * r["p50_ns"] / old["p50_ns"]


def run_thread_count(threads: int, workloads: str, quick: bool, rounds: int = 1) -> dict:
    """Floors, then each engine, each in a process of its own; `rounds` times over, each
    round a share of the repeats, so every engine is timed across the same stretch of a
    shared machine's load rather than in one window of its own.

    One process per engine, not just per thread count: idle BLAS/OpenMP/ORT
    worker pools keep spinning for a while after a call, and on a machine with
    few cores one engine's spinning pool would steal the cores of the next.
    """
    from .peers import load_all

    run = {"threads": threads, "rounds": rounds, "parts": [], "results": [], "sweep": [],
           "skipped": [], "errors": []}
    for round_index in range(rounds):
        for part in ("floors",) + tuple(m.NAME for m in load_all()):
            if part == "floors" and round_index:
                continue
            doc = run_worker(threads, part, workloads, quick, rounds=rounds)
            run["parts"].append({k: doc[k] for k in ("part", "env", "loadavg_before", "loadavg_after")})
            if round_index:
                merge_round(run["results"], doc["results"])
                run["errors"] += doc["errors"]
                continue
            for key in ("results", "sweep", "skipped", "errors"):
                run[key] += doc[key]
            if part == "floors":
                run["floors"], run["versions"] = doc["floors"], doc["versions"]
    for r in run["results"]:
        r.pop("times_ns", None)
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default=None, help="comma-separated thread counts (default: 1,<all cores>)")
    p.add_argument("--workloads", default=",".join(KNOWN),
                   help="comma-separated subset of " + ",".join(KNOWN) + " (the tiny-model overhead always runs)")
    p.add_argument("--quick", action="store_true", help="few repeats: a fast smoke run, not numbers to quote")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--rounds", type=int, default=1,
                   help="split each engine's repeats over this many passes through the engines")
    p.add_argument("--contention", action="store_true",
                   help="also W1/W2 at default threads: quiet, niced beside one busy core, every core busy")
    p.add_argument("--readme", action="store_true",
                   help="rewrite the latency table in README.md (between its benchmark-table markers)")
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
        doc["runs"].append(run_thread_count(n, ",".join(wanted), args.quick, args.rounds))
    if args.contention:
        doc["contention"] = run_contention("W1,W2", args.quick, cores)

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
    if args.readme:
        write_readme_table(REPO / "README.md", readme_summary(doc))
        print(f"README.md: benchmark table rewritten from {out / 'results.json'}")


if __name__ == "__main__":
    main()
