"""`bench compare A.json B.json`: what changed between two runs, with the noise taken into account.

Per graph, backend and precision present in both: the mean before and after, the ratio, and
Welch's t-test on the two runs' summary statistics (mean, sample deviation, count). A change is
called only when the test rejects equal means and the change is large enough to matter; otherwise
it is "within noise". Runs without a spread (an old runner that prints only a total) get no
verdict rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from android_bench.report import BenchReport
from android_bench.stats import Change, compare_summaries


@dataclass
class Comparison:
    before: BenchReport
    after: BenchReport
    rows: list[tuple[tuple[str, str, str], Change]]
    only_before: list[tuple[str, str, str]]
    only_after: list[tuple[str, str, str]]


def compare(a: str | Path, b: str | Path, alpha: float = 0.01,
            min_change: float = 0.02) -> Comparison:
    before, after = BenchReport.load(a), BenchReport.load(b)
    ra = {r.key: r for r in before.results}
    rb = {r.key: r for r in after.results}
    rows = [(k, compare_summaries(ra[k].summary(), rb[k].summary(), alpha, min_change))
            for k in ra if k in rb]
    return Comparison(before, after, rows, [k for k in ra if k not in rb],
                      [k for k in rb if k not in ra])


def format_comparison(c: Comparison) -> str:
    lines = [f"before  {c.before.device.get('label', '?')}  {c.before.created}"
             + ("  (partial)" if c.before.partial else ""),
             f"after   {c.after.device.get('label', '?')}  {c.after.created}"
             + ("  (partial)" if c.after.partial else "")]
    if c.before.device.get("label") != c.after.device.get("label"):
        lines.append("note    the runs come from different devices")
    head = (f"{'graph':<12} {'backend':<10} {'precision':<9} {'before ms':>10} {'after ms':>10} "
            f"{'change':>8} {'p':>8}  verdict")
    lines += ["", head, "-" * len(head)]
    for (backend, precision, graph), ch in c.rows:
        p = f"{ch.p_value:.2g}" if ch.p_value is not None else "-"
        lines.append(f"{graph:<12} {backend:<10} {precision:<9} {ch.before_ms:>10.3f} "
                     f"{ch.after_ms:>10.3f} {(ch.ratio - 1) * 100:>+7.1f}% {p:>8}  "
                     f"{ch.verdict}")
    if not c.rows:
        lines.append("(no graph, backend and precision in common)")
    ea = {(e.backend, e.precision): e for e in c.before.end_to_end}
    for e in c.after.end_to_end:
        if (e.backend, e.precision) in ea:
            old = ea[(e.backend, e.precision)].seconds_per_photo
            lines.append(f"photo        {e.backend:<10} {e.precision:<9} {old:>9.2f}s "
                         f"{e.seconds_per_photo:>9.2f}s {(e.seconds_per_photo / old - 1) * 100:>+7.1f}%")
    for k in c.only_before:
        lines.append(f"only before  {k[2]} {k[0]} {k[1]}")
    for k in c.only_after:
        lines.append(f"only after   {k[2]} {k[0]} {k[1]}")
    return "\n".join(lines)
