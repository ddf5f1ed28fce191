"""What the CLI prints: progress lines and the results table."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from calmon_cli.platform import CheckRun


def progress_printer(label: str, stream=sys.stderr) -> Callable[[int, int, CheckRun], None]:
    """A progress line per finished run, with what it came to: the check's status (ok / breach /
    inconclusive / failed) when it wrote a row, "stored" for a reference scan, the error of a run
    that failed."""
    started = time.monotonic()

    def show(done: int, total: int, run: CheckRun) -> None:
        width = 24
        filled = int(width * done / max(total, 1))
        mark = (run.outcome or "done") if run.succeeded else f"FAILED: {run.error}"
        stream.write(
            f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
            f"{time.monotonic() - started:5.0f}s  {run.device_id}: {mark}\n"
        )
        stream.flush()

    return show


def format_results_table(rows) -> str:
    headers = [
        "deployment",
        "device",
        "check",
        "status",
        "yaw°",
        "pitch°",
        "roll°",
        "±max°",
        "inliers",
        "trend°/day",
        "days to threshold",
        "note",
    ]

    def num(v):
        return "" if v is None else f"{v:+.3f}"

    def trend(r) -> str:
        if r.trend_axis is None or r.trend_deg_per_day is None:
            return ""
        sigma = "" if r.trend_sigma_deg_per_day is None else f" ±{r.trend_sigma_deg_per_day:.3f}"
        return f"{r.trend_axis} {r.trend_deg_per_day:+.3f}{sigma}"

    def days(r) -> str:
        if r.days_to_threshold is None:
            return ""
        sigma = "" if r.days_to_threshold_sigma is None else f" ±{r.days_to_threshold_sigma:.1f}"
        return f"{r.days_to_threshold:.1f}{sigma}"

    lines = []
    for r in rows:
        sig = [s for s in (r.yaw_uncertainty, r.pitch_uncertainty, r.roll_uncertainty) if s is not None]
        note = (r.failure_log or "")[:70]
        lines.append(
            [
                r.deployment_name,
                r.device_id,
                r.check_partition,
                str(r.status.value if hasattr(r.status, "value") else r.status),
                num(r.yaw_offset),
                num(r.pitch_offset),
                num(r.roll_offset),
                f"{max(sig):.3f}" if sig else "",
                "" if r.inliers is None else str(r.inliers),
                trend(r),
                days(r),
                note,
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)
