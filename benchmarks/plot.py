"""latency.png: p50 per engine per workload at each thread count, and the batch sweep."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on benchmark machines
import matplotlib.pyplot as plt

from .report import BASE, ORDER, UNITS, _engines, _find


def plot(doc, path):
    engines = _engines(doc)
    threads = [run["threads"] for run in doc["runs"]]
    panels = [w for w in ORDER if any(_find(doc, w, e, n) for e in engines for n in threads)]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    axes = axes.ravel()
    colors = {e: f"C{i}" for i, e in enumerate(engines)}
    width = 0.8 / max(len(threads), 1)
    for ax, w in zip(axes, panels):
        unit, scale = UNITS[w]
        for j, n in enumerate(threads):
            for i, e in enumerate(engines):
                r = _find(doc, w, e, n)
                if r is None:
                    continue
                ax.bar(i + (j - (len(threads) - 1) / 2) * width, r["p50_ns"] / scale, width,
                       color=colors[e], alpha=1.0 if j == 0 else 0.55, edgecolor="black", linewidth=0.5)
                ax.errorbar(i + (j - (len(threads) - 1) / 2) * width, r["p50_ns"] / scale,
                            yerr=[[0], [(r["p99_ns"] - r["p50_ns"]) / scale]], color="black", capsize=2, lw=0.8)
        ax.set_xticks(range(len(engines)), engines, rotation=20)
        ax.set_yscale("log")  # the NumPy reference is orders of magnitude slower
        ax.set_ylabel(f"p50 {unit} per call (bar), p99 (whisker)")
        ax.set_title(next(r["title"] for run in doc["runs"] for r in run["results"] if r["workload"] == w),
                     fontsize=9)
        ax.grid(axis="y", which="both", alpha=0.3)
    if threads:
        fig.text(0.5, 0.005, "bars per engine: " + ", ".join(f"{n} thr" for n in threads)
                 + " (left to right, lighter = more threads); log scales", ha="center", fontsize=8)
    has_sweep = any(run["sweep"] for run in doc["runs"])
    ax = axes[len(panels)] if has_sweep and len(panels) < len(axes) else None
    if ax is not None:
        styles = ["-o", "--s", ":^", "-.d"]
        for e in engines:
            for j, run in enumerate(doc["runs"]):
                pts = sorted((s["batch"], s["seq_per_s"]) for s in run["sweep"] if s["engine"] == e)
                if pts:
                    ax.plot(*zip(*pts), styles[j % len(styles)], color=colors[e], label=f"{e}, {run['threads']} thr",
                            lw=2 if e == BASE else 1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size (model M, T=100)")
        ax.set_ylabel("sequences/s")
        ax.set_title("throughput against batch size", fontsize=9)
        ax.grid(which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    for extra in axes[len(panels) + (ax is not None):]:
        extra.axis("off")
    fig.suptitle("gru_infer vs peers (lower latency is better)")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
