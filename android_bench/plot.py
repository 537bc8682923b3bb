"""One figure per bench run: per-graph latency by backend and precision, and the end-to-end
time of a 12 MP photo when the tile plan is known."""

from __future__ import annotations

from pathlib import Path

from android_bench.report import BenchReport
from f2i_mobile.core.atomic import atomic_file
from f2i_mobile.core.contract import GRAPHS


def plot_report(report: BenchReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = sorted({(r.backend, r.precision) for r in report.results})
    graphs = [g for g in GRAPHS if any(r.graph == g for r in report.results)]
    by_key = {r.key: r for r in report.results}
    panels = 2 if report.end_to_end else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels + 1, 4.8), squeeze=False,
                             gridspec_kw={"width_ratios": [2, 1][:panels]})
    ax = axes[0][0]
    width = 0.8 / max(len(variants), 1)
    colors = plt.get_cmap("tab10")
    for i, (backend, precision) in enumerate(variants):
        xs, ys, lo, hi = [], [], [], []
        for j, g in enumerate(graphs):
            r = by_key.get((backend, precision, g))
            if r is None:
                continue
            y = r.typical_ms
            xs.append(j + (i - (len(variants) - 1) / 2) * width)
            ys.append(y)
            # Whiskers from the fastest run to the 90th percentile (or the slowest run).
            top = r.p90_ms if r.p90_ms is not None else r.max_ms
            lo.append(y - r.min_ms if r.min_ms is not None else 0)
            hi.append(top - y if top is not None else 0)
        ax.bar(xs, ys, width * 0.95, yerr=[lo, hi], capsize=3, color=colors(i % 10),
               label=f"{backend} {precision}")
        for x, y, h in zip(xs, ys, hi):
            ax.annotate(f"{y:.3g}", (x, y + h), textcoords="offset points", xytext=(0, 3),
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(graphs)), graphs)
    ys_all = [r.typical_ms for r in report.results]
    if ys_all and max(ys_all) / max(min(ys_all), 1e-9) > 50:
        ax.set_yscale("log")
    ax.set_ylabel("ms per call: median, whiskers min to p90 (or max)")
    dev = report.device
    ax.set_title(f"{dev.get('label', '')}: {dev.get('soc', '')}\n"
                 f"tile {report.model.get('tile')} -> {report.model.get('output_tile')}, "
                 f"{report.settings.get('runs')} runs" + ("  [PARTIAL]" if report.partial
                                                          else ""), fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if report.end_to_end:
        ax2 = axes[0][1]
        e2e = report.end_to_end
        names = [f"{e.backend}\n{e.precision}" for e in e2e]
        secs = [e.seconds_per_photo for e in e2e]
        idx = {v: i for i, v in enumerate(variants)}
        ax2.bar(range(len(e2e)), secs,
                color=[colors(idx.get((e.backend, e.precision), 0) % 10) for e in e2e])
        for i, e in enumerate(e2e):
            ax2.annotate(f"{e.seconds_per_photo:.3g} s\n{e.achieved_gflops_per_s:.0f} GFLOP/s",
                         (i, e.seconds_per_photo), textcoords="offset points", xytext=(0, 2),
                         ha="center", va="bottom", fontsize=7)
        ax2.set_xticks(range(len(e2e)), names, fontsize=8)
        ax2.set_ylabel("seconds per photo")
        ax2.set_title(f"{e2e[0].width}x{e2e[0].height} photo, {e2e[0].tiles} tiles",
                      fontsize=10)
        ax2.grid(axis="y", alpha=0.3)
        ax2.margins(y=0.2)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
