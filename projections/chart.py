"""The daily report's chart: calls per hour, with incident start and restore marks (PNG)."""

from datetime import datetime
from pathlib import Path
from typing import Any


def calls_per_hour_png(chart: dict[str, Any], path: Path) -> Path:
    """Draw `Report.chart` of a daily report to `path`; returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    from matplotlib import pyplot

    hours = list(range(24))
    counts = [chart["calls_per_hour"].get(h, 0) for h in hours]

    def hour_of(moment: datetime) -> float:
        return moment.hour + moment.minute / 60

    figure, axes = pyplot.subplots(figsize=(10, 4), dpi=100)
    axes.bar(hours, counts, width=0.8, color="#4a7ab5", label="calls", align="edge")
    for n, moment in enumerate(chart["opened"]):
        axes.axvline(
            hour_of(moment),
            color="#c0392b",
            linestyle="--",
            linewidth=1.2,
            label="incident opened" if n == 0 else None,
        )
    for n, moment in enumerate(chart["restored"]):
        axes.axvline(
            hour_of(moment),
            color="#27ae60",
            linestyle=":",
            linewidth=1.5,
            label="incident restored" if n == 0 else None,
        )
    axes.set_xlim(0, 24)
    axes.set_xticks(range(0, 25, 2))
    axes.set_xlabel("hour (UTC)")
    axes.set_ylabel("calls")
    axes.set_title(f"Calls per hour, {chart['day']}")
    axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, format="png")
    pyplot.close(figure)
    return path
