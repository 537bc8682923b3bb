"""How close one output is to another, and the one record every fidelity gate reports.

Images are compared the paper's way: PSNR and SSIM on the Y channel (ITU-R BT.601 on 8-bit
values, as MATLAB's rgb2ycbcr), `shave` pixels cut at the border. Latents and tokens have no
Y channel: their PSNR takes the reference tensor's range as the peak.

`Check` is one row of any gate (`f2i-mobile parity`, `f2i-mobile quant-check`, the fidelity
benchmarks): a backend and precision, a graph or `end_to_end`, the scores, the threshold and
whether it passed, failed or was skipped (with why). Torch-free.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import numpy as np

from f2i_mobile.core.contract import RESULT

END_TO_END = "end_to_end"
BT601 = np.array([65.481, 128.553, 24.966])


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 in [0, 1] -> Y in [16, 235] of the 8-bit values, as MATLAB's rgb2ycbcr."""
    rgb8 = np.round(np.clip(rgb, 0, 1) * 255.0) / 255.0
    return 16.0 + rgb8 @ BT601


def psnr(out: np.ndarray, ref: np.ndarray, peak: float) -> float:
    mse = float(np.mean((np.asarray(out, np.float64) - ref) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def score(sr: np.ndarray, hr: np.ndarray, shave: int) -> tuple[float, float]:
    """PSNR and SSIM on Y of one H x W x 3 image in [0, 1] against another."""
    from skimage.metrics import structural_similarity

    a, b = y_channel(sr), y_channel(hr)
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    ssim = structural_similarity(b, a, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)
    return psnr(a, b, 255.0), float(ssim)


def image_scores(sr: np.ndarray, ref: np.ndarray, shave: int) -> tuple[float, float]:
    """Mean Y PSNR and SSIM of [N,3,H,W] images against [N,3,H,W] references."""
    pairs = [score(s.transpose(1, 2, 0), r.transpose(1, 2, 0), shave) for s, r in zip(sr, ref)]
    return float(np.mean([p for p, _ in pairs])), float(np.mean([s for _, s in pairs]))


def output_scores(name: str, out: np.ndarray, ref: np.ndarray, shave: int,
                  ) -> tuple[float, float | None]:
    """A graph output against its reference: Y PSNR and SSIM for the SR image, PSNR over the
    reference's range (no SSIM) for latents and tokens."""
    if name == RESULT:
        return image_scores(out, ref, shave)
    return psnr(out, ref, float(ref.max() - ref.min()) or 1.0), None


def color_cast(sr: np.ndarray, ref: np.ndarray) -> float:
    """The largest per-channel mean difference, in 8-bit levels, of H x W x 3 images."""
    return float(np.abs(sr.reshape(-1, 3).mean(0) - ref.reshape(-1, 3).mean(0)).max() * 255.0)


class Status(StrEnum):
    PASS = "pass"
    FAIL = "FAIL"
    SKIP = "skipped"
    INFO = "-"  # measured, not gated


@dataclass
class Check:
    backend: str
    precision: str
    graph: str  # a graph name or END_TO_END
    psnr: float | None = None  # dB against the reference (float torch, or float artifacts)
    ssim: float | None = None
    max_abs: float | None = None
    psnr_hr: float | None = None  # the SR against the HR image, where there is one
    min_psnr: float | None = None  # the gate; None: reported, not gated
    status: Status = Status.INFO
    note: str = ""
    bytes: int | None = None  # the artifact(s) checked

    def judge(self) -> Check:
        """Status from the threshold: PASS or FAIL when gated, INFO otherwise."""
        if self.min_psnr is not None and self.psnr is not None:
            self.status = Status.PASS if self.psnr >= self.min_psnr else Status.FAIL
        return self

    @property
    def failed(self) -> bool:
        return self.status == Status.FAIL


def skipped(backend: str, precision: str, graph: str, why: str) -> Check:
    return Check(backend, precision, graph, status=Status.SKIP, note=why)


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else ("inf" if math.isinf(x) else f"{x:.{digits}f}")


@dataclass
class FidelityReport:
    """What a gate prints and writes: its checks, what they were measured on (`context`), and
    notes. `ok` when no check failed (skipped ones say why in their note)."""

    gate: str  # parity, quant-check, ...
    checks: list[Check]
    context: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [f"{c.backend} {c.precision} {c.graph}: PSNR {_f(c.psnr)} dB < {c.min_psnr:g} dB"
                if c.psnr is not None else f"{c.backend} {c.precision} {c.graph}: {c.note}"
                for c in self.checks if c.failed]

    @property
    def ok(self) -> bool:
        return not self.failures

    def table(self) -> str:
        head = ["backend", "precision", "graph", "PSNR dB", "SSIM", "max abs", "vs HR dB", "MB",
                "gate", "status"]
        rows = [head]
        for c in self.checks:
            rows.append([c.backend, c.precision, c.graph, _f(c.psnr), _f(c.ssim, 4),
                         "-" if c.max_abs is None else f"{c.max_abs:.2e}", _f(c.psnr_hr),
                         "-" if c.bytes is None else f"{c.bytes / 1e6:.2f}",
                         "-" if c.min_psnr is None else f">= {c.min_psnr:g}", c.status.value])
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        notes = sorted({f"{c.backend} {c.precision}: {c.note}" for c in self.checks if c.note})
        return "\n".join(lines + notes + self.notes + [f"FAILED: {f}" for f in self.failures])

    def to_json(self) -> str:
        """Strict JSON for CI; an infinite PSNR (identical outputs) is written as null."""
        def clean(x):
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            return x

        report = {"gate": self.gate, "ok": self.ok, "failures": self.failures,
                  "context": self.context, "notes": self.notes,
                  "checks": [asdict(c) for c in self.checks]}
        return json.dumps(clean(report), indent=2, allow_nan=False)


def seam_steps(image: np.ndarray, plan) -> tuple[float, float]:
    """Where tiles meet, does the tone jump? The largest step, in 8-bit levels, of the mean
    profile across each seam (column means within each row of tiles for the vertical seams,
    row means within each column of tiles for the horizontal ones) inside the overlaps where
    neighbouring tiles meet, and the largest such step everywhere else. A tile whose tone is
    its own shows as a border step above every inside step; texture averages out of the
    profiles. `image`: H x W x 3 in [0, 1], the output of `plan` (a `core.planner.TilePlan`)."""
    gray = image.mean(axis=2) * 255.0
    h, w = gray.shape
    border, inside = 0.0, 0.0
    for axis, count in ((1, plan.cols), (0, plan.rows)):
        # Tiles of one row (vertical seams) or one column (horizontal seams) of the plan.
        lines = ([t for t in plan.tiles if t.row == r] for r in range(plan.rows)) if axis == 1 \
            else ([t for t in plan.tiles if t.col == c] for c in range(plan.cols))
        for tiles in lines:
            box = tiles[0].out
            band = gray[box.y0:min(box.y1, h)] if axis == 1 else gray[:, box.x0:min(box.x1, w)]
            profile = band.mean(axis=1 - axis)
            steps = np.abs(np.diff(profile))
            seam = np.zeros(steps.shape, bool)
            for a, b in zip(tiles, tiles[1:]):
                start, end = (b.out.x0, a.out.x1) if axis == 1 else (b.out.y0, a.out.y1)
                seam[start:min(end, steps.size)] = True
            if count > 1 and seam.any():
                border = max(border, float(steps[seam].max()))
            if (~seam).any():
                inside = max(inside, float(steps[~seam].max()))
    return border, inside
