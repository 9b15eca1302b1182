"""Markdown report from the merged results document (see run.py)."""

from __future__ import annotations

# Display unit per workload: (name, ns per unit).
UNITS = {"W1": ("µs", 1e3), "tiny": ("µs", 1e3), "W2": ("µs", 1e3), "W3": ("ms", 1e6), "W4": ("ms", 1e6)}
ORDER = ("W1", "W2", "W3", "W4", "tiny")
BASE = "gru_infer"


def _num(v: float) -> str:
    return f"{v:.3g}" if v < 100 else f"{v:,.0f}"


def _rows(doc):
    return [r for run in doc["runs"] for r in run["results"]]


def _engines(doc):
    seen = []
    for r in _rows(doc):
        if r["engine"] not in seen:
            seen.append(r["engine"])
    return seen


def _find(doc, workload, engine, threads):
    for r in _rows(doc):
        if (r["workload"], r["engine"], r["threads"]) == (workload, engine, threads) and "p50_ns" in r:
            return r
    return None


def latency_table(doc, skip=()) -> list:
    engines = [e for e in _engines(doc) if e not in skip]
    lines = ["| workload | thr | " + " | ".join(engines) + " |", "|---|---|" + "---|" * len(engines)]
    for w in ORDER:
        unit, scale = UNITS[w]
        for run in doc["runs"]:
            n = run["threads"]
            base = _find(doc, w, BASE, n)
            if base is None and not any(_find(doc, w, e, n) for e in engines):
                continue
            cells = []
            for e in engines:
                r = _find(doc, w, e, n)
                if r is None:
                    cells.append("—")
                    continue
                cell = f"{_num(r['p50_ns'] / scale)} / {_num(r['p99_ns'] / scale)}"
                if base is not None and e != BASE:
                    cell += f" (×{r['p50_ns'] / base['p50_ns']:.2f})"
                if r.get("note"):
                    cell += " †"
                cells.append(cell)
            title = next(r["title"] for r in _rows(doc) if r["workload"] == w)
            lines.append(f"| {w} {title} [{unit}] | {n} | " + " | ".join(cells) + " |")
    return lines


def best_table(doc) -> list:
    """Fastest call per engine (×ratio on those): on a shared machine the p50 of a long call
    measures the machine's load as much as the engine; the best call is the engine."""
    engines = _engines(doc)
    lines = ["| workload | thr | " + " | ".join(engines) + " |", "|---|---|" + "---|" * len(engines)]
    for w in ("W2", "W3", "W4"):
        unit, scale = UNITS[w]
        for run in doc["runs"]:
            n = run["threads"]
            base = _find(doc, w, BASE, n)
            cells = []
            for e in engines:
                r = _find(doc, w, e, n)
                if r is None:
                    cells.append("—")
                    continue
                cell = _num(r["min_ns"] / scale)
                if base is not None and e != BASE:
                    cell += f" (×{r['min_ns'] / base['min_ns']:.2f})"
                cells.append(cell)
            if any(c != "—" for c in cells):
                lines.append(f"| {w} [{unit}] | {n} | " + " | ".join(cells) + " |")
    return lines


def throughput_table(doc) -> list:
    engines = _engines(doc)
    lines = ["| workload | thr | " + " | ".join(engines) + " |", "|---|---|" + "---|" * len(engines)]
    for w, key, label in (("W3", "seq_per_s", "sequences/s"), ("W4", "GFLOPs", "GFLOP/s")):
        for run in doc["runs"]:
            n = run["threads"]
            peak = run["floors"]["sgemm_GFLOPs"]
            f = run["floors"]
            fma = max(f.get("fma_peak_avx512_GFLOPs", 0), f.get("fma_peak_avx2_GFLOPs", 0)) * n
            cells = []
            for e in engines:
                r = _find(doc, w, e, n)
                if r is None or key not in r:
                    cells.append("—")
                elif w == "W4":
                    # the float32 FMA peak: no yardstick for bf16/int8 dot products
                    reduced = e in {name for _, name in PRECISION_ROWS} or e == "openvino_bf16"
                    of_fma = f", {100 * r[key] / fma:.0f}% of FMA peak" if fma and not reduced else ""
                    cells.append(f"{r[key]:.1f} ({100 * r[key] / peak:.0f}% of sgemm{of_fma})")
                else:
                    cells.append(f"{r[key]:,.0f}")
            if any(c != "—" for c in cells):
                lines.append(f"| {w} {label} | {n} | " + " | ".join(cells) + " |")
    return lines


def accuracy_table(doc) -> list:
    engines = _engines(doc)
    lines = ["| workload (checked slice) | " + " | ".join(engines) + " |", "|---|" + "---|" * len(engines)]
    for w in ORDER:
        rows = [r for r in _rows(doc) if r["workload"] == w and "max_abs_err" in r]
        if not rows:
            continue
        cells = []
        for e in engines:
            errs = [r["max_abs_err"] for r in rows if r["engine"] == e]
            if not errs:
                cells.append("—")
            else:
                bad = any(r["mismatch"] for r in rows if r["engine"] == e)
                cells.append(f"**{max(errs):.2e} MISMATCH**" if bad else f"{max(errs):.2e}")
        r0 = rows[0]
        what = f"{r0['check_rows']} row(s) × {r0['check_steps']} steps"
        lines.append(f"| {w} ({what}) | " + " | ".join(cells) + " |")
    return lines


PRECISION_ROWS = (("bf16", "gru_infer_bf16"), ("int8", "gru_infer_int8"))
PRECISION_PEERS = (("ORT", "onnxruntime"), ("OV bf16", "openvino_bf16"))


def precision_table(doc) -> list:
    """gru_infer with bf16 / int8 weights beside float32 gru_infer, ONNX Runtime and
    OpenVINO bf16: p50, the ratio each peer's p50 is of the row's (>1: the row is
    faster), and the max abs error against the float32 NumPy reference."""
    have = [(label, e) for label, e in PRECISION_ROWS if any(r["engine"] == e for r in _rows(doc))]
    if not have:
        return []
    head = ["workload", "thr", "gru_infer fp32"] + [f"gru_infer {label}" for label, _ in have]
    head += [e for _, e in PRECISION_PEERS]
    head += [f"{label} ×{peer}" for label, _ in have for peer, _ in PRECISION_PEERS]
    head += [f"err {label}" for label, _ in (("fp32", BASE),) + tuple(have)] + ["err OV bf16"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w in ("W1", "W2", "W3", "W4"):
        unit, scale = UNITS[w]
        for run in doc["runs"]:
            n = run["threads"]
            rows = {e: _find(doc, w, e, n) for e in
                    [BASE] + [e for _, e in have] + [e for _, e in PRECISION_PEERS]}
            if all(rows[e] is None for _, e in have):
                continue
            cells = [f"{w} [{unit}]", str(n), _p50(rows[BASE], scale)]
            cells += [_p50(rows[e], scale) for _, e in have]
            cells += [_p50(rows[e], scale) for _, e in PRECISION_PEERS]
            cells += [_ratio(rows[e], rows[peer]) for _, e in have for _, peer in PRECISION_PEERS]
            cells += [_err(_find_checked(doc, w, e)) for e in [BASE] + [e for _, e in have]]
            cells.append(_err(_find_checked(doc, w, "openvino_bf16")))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _p50(row, scale) -> str:
    return "—" if row is None else _num(row["p50_ns"] / scale)


def _ratio(row, peer) -> str:
    return "—" if row is None or peer is None else f"×{peer['p50_ns'] / row['p50_ns']:.2f}"


def _err(value) -> str:
    return "—" if value is None else f"{value:.1e}"


def _find_checked(doc, workload, engine):
    """The largest max abs error of an engine on a workload over thread counts (None: not run)."""
    errs = [r["max_abs_err"] for r in _rows(doc)
            if (r["workload"], r["engine"]) == (workload, engine) and "max_abs_err" in r]
    return max(errs) if errs else None


def floors_table(doc) -> list:
    lines = [("| thr | weight read, np.sum | weight read, sgemv | sgemm GFLOP/s | FMA peak, 1 core: AVX-512 / AVX2 "
              "| bare gru_infer.GRU step, tiny: p50 / p99 | one step inside C (1 thr): tiny / M gru1 / M gru2 |"),
             "|---|---|---|---|---|---|---|"]
    for run in doc["runs"]:
        f = run["floors"]
        peak = (f"{f['fma_peak_avx512_GFLOPs']:.0f} / {f['fma_peak_avx2_GFLOPs']:.0f}"
                if "fma_peak_avx512_GFLOPs" in f else "—")
        c_step = (f"{f['c_step_tiny_us']:.2f} / {f['c_step_M_gru1_us']:.1f} / {f['c_step_M_gru2_us']:.1f} µs "
                  f"({f['isa']})" if "c_step_tiny_us" in f else "—")
        lines.append(
            f"| {run['threads']} | {f['sum_p50_us']:.1f} µs ({f['sum_GBps']:.1f} GB/s) "
            f"| {f['sgemv_p50_us']:.1f} µs ({f['sgemv_GBps']:.1f} GB/s) "
            f"| {f['sgemm_GFLOPs']:.1f} (n={f['sgemm_n']}) | {peak} "
            f"| {f['bare_step_p50_us']:.2f} / {f['bare_step_p99_us']:.2f} µs | {c_step} |")
    return lines


def sweep_table(doc) -> list:
    batches = sorted({s["batch"] for run in doc["runs"] for s in run["sweep"]})
    if not batches:
        return []
    lines = ["| engine | thr | " + " | ".join(f"B={b}" for b in batches) + " |",
             "|---|---|" + "---|" * len(batches)]
    for e in _engines(doc):
        for run in doc["runs"]:
            by_b = {s["batch"]: s["seq_per_s"] for s in run["sweep"] if s["engine"] == e}
            if by_b:
                lines.append(f"| {e} | {run['threads']} | "
                             + " | ".join(f"{by_b[b]:,.0f}" if b in by_b else "—" for b in batches) + " |")
    return lines


def contention_table(doc) -> list:
    c = doc.get("contention")
    if not c or not c["results"]:
        return []
    scenarios = [s["name"] for s in c["scenarios"]]
    found = {(r["scenario"], r["engine"], r["workload"]): r for r in c["results"]}
    engines = []
    for r in c["results"]:
        if r["engine"] not in engines:
            engines.append(r["engine"])
    lines = ["| engine | workload | " + " | ".join(f"{s}: p50 / p99 (×quiet p50)" for s in scenarios) + " |",
             "|---|---|" + "---|" * len(scenarios)]
    for e in engines:
        for w in ("W1", "W2", "tiny"):
            quiet = found.get(("quiet", e, w))
            if quiet is None:
                continue
            unit, scale = UNITS[w]
            cells = []
            for s in scenarios:
                r = found.get((s, e, w))
                if r is None:
                    cells.append("—")
                    continue
                cell = f"{_num(r['p50_ns'] / scale)} / {_num(r['p99_ns'] / scale)} {unit}"
                one = found.get((s, f"{e} (1 thr)", w))
                if one is not None:
                    cell += f", 1 thr ×{one['p50_ns'] / r['p50_ns']:.2f}"
                if s != "quiet":
                    cell += f" (×{r['p50_ns'] / quiet['p50_ns']:.2f})"
                cells.append(cell)
            lines.append(f"| {e} | {w} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {s['name']}: {s['what']}" for s in c["scenarios"]]
    lines.append("- \"1 thr ×\": that scenario's p50 at 1 thread over its p50 at the default (>1: the "
                 "default is faster)")
    loads = [f"{r['scenario']} {r['engine']} {r['loadavg']:.1f}" for r in c["results"] if r["workload"] == "W1"]
    lines.append("- 1-min load average after each: " + ", ".join(loads))
    lines += [f"- error: {e.splitlines()[0]}" for e in c["errors"]]
    return lines


def readme_summary(doc) -> str:
    """The README's table: p50 latency beside the peers, and the CPU it was measured on."""
    m = doc["machine"]
    precision = precision_table(doc)
    return "\n".join([
        f"Measured on {m['cpu']} ({m['cores']} cores visible; {m.get('cpu_details', '')}), "
        f"{doc['started'][:10]}, with "
        f"`{doc['command']}`. p50 / p99; ×ratio = peer p50 / gru_infer p50 (>1: gru_infer is faster). "
        "The full report (best calls, throughput, errors, floors, contention) is written to "
        "`benchmarks/results/results.md`.", "",
        *latency_table(doc, skip=("numpy_ref",) + tuple(e for _, e in PRECISION_ROWS)), "",
        *(["Reduced-precision weights (`with_precision(\"bfloat16\")` / `(\"int8\")`): each row's p50, "
           "the peers' p50 over it, and the max abs error against the float32 reference:", "", *precision, ""]
          if precision else []),
    ])


def markdown(doc) -> str:
    m = doc["machine"]
    v = doc["runs"][0]["versions"] if doc["runs"] else {}
    tp = throughput_table(doc)
    weight_mb = doc["runs"][0]["floors"]["weight_bytes"] / 1e6 if doc["runs"] else 0
    out = [
        "# gru_infer latency benchmark", "",
        f"`{doc['command']}` — {doc['started']}", "",
        f"CPU: {m['cpu']} ({m['cores']} cores visible; {m.get('cpu_details', '')}); "
        + ", ".join(f"{k} {val}" for k, val in v.items() if k in
                    ("python", "numpy", "scipy", "gru_infer", "gru_infer_kernel", "torch", "onnxruntime",
                     "openvino")), "",
        ("Every (thread count, engine) pair and the floors ran in a fresh process with "
         "OMP/OPENBLAS/MKL_NUM_THREADS set to the thread count before any import."), "",
        "## Latency: p50 / p99 (×ratio = peer p50 / gru_infer p50; >1 means gru_infer is faster)", "",
        *latency_table(doc), "",
        "## Best call (×ratio = peer best / gru_infer best)", "",
        *best_table(doc), "",
        *(["## Throughput", "", *tp, ""] if len(tp) > 2 else []),
        *(["## Reduced-precision weights: p50 (×ratio = peer p50 / this row's p50), max abs error "
           "against the float32 reference", "", *precision_table(doc), ""]
          if precision_table(doc) else []),
        "## Max abs error against the NumPy reference (max over thread counts)", "",
        *accuracy_table(doc), "",
        f"## Floors (weight read: all {weight_mb:.2f} MB of model M's float32 weights, once)", "",
        *floors_table(doc), "",
    ]
    contention = contention_table(doc)
    if contention:
        out += ["## Contention: W1 and W2 at each engine's default thread settings", "", *contention, ""]
    sweep = sweep_table(doc)
    if sweep:
        out += ["## Batch sweep: sequences/s, model M, T=100", "", *sweep, ""]
    notes = []
    if any(r.get("note") for r in _rows(doc)):
        notes += sorted({f"† {r['engine']} {r['workload']}: {r['note']} (slow plain-NumPy loops)"
                         for r in _rows(doc) if r.get("note")})
    for run in doc["runs"]:
        notes += [f"{run['threads']} thr: skipped {s['engine']}: {s['reason']}" for s in run["skipped"]]
        notes += [f"{run['threads']} thr: error {e.splitlines()[0]} … {e.strip().splitlines()[-1]}"
                  for e in run["errors"]]
    for run in doc["runs"]:
        loads = ", ".join(f"{p['part']} {p['loadavg_before'][0]:.1f}→{p['loadavg_after'][0]:.1f}"
                          for p in run.get("parts", []))
        if loads:
            notes.append(f"{run['threads']} thr: 1-min load average before→after each process "
                         f"(machine has {doc['machine']['cores']} cores): {loads}")
    one = next((r["floors"]["sgemm_GFLOPs"] for r in doc["runs"] if r["threads"] == 1), None)
    for run in doc["runs"]:
        n, g = run["threads"], run["floors"]["sgemm_GFLOPs"]
        if one and n > 1 and g < 0.75 * n * one:
            notes.append(f"**{n} thr: sgemm reached only {g / one:.2f}× its 1-thread rate: the cores were not "
                         f"free (shared machine), so the {n}-thread numbers measure contention, not the engines.**")
    variants = sorted({r["variant"] for r in _rows(doc) if r["engine"] == BASE and r.get("variant")})
    if variants:
        notes.append(f"gru_infer ran as: {', '.join(variants)}")
    mism = [r for r in _rows(doc) if r.get("mismatch")]
    notes += [f"**MISMATCH** {r['workload']} {r['engine']} {r['threads']} thr: max abs err {r['max_abs_err']:.3g}"
              for r in mism]
    notes.append("W1 and tiny time one streamed step per call (state carried); the ONNX Runtime stream uses "
                 "I/O binding with preallocated buffers; tiny = one GRU layer I=8, H=8: the per-call overhead.")
    out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)
