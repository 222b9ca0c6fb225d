"""bench/results/peers.png: one panel per shape, a horizontal bar per client showing its req/s
relative to requests.Session in the same run (log scale, 1x marked); failed clients say so."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from report import table

#: Bar colours by client key: fastpool's in blue, requests' in grey, the floor in black.
COLOURS = {
    "fastpool-session": "#1f4e9c",
    "fastpool-adapter": "#3b7dd8",
    "fastpool-poolmanager": "#86b2ee",
    "requests": "#7f7f7f",
    "requests-no-env": "#b0b0b0",
    "floor": "#222222",
}
OTHER = "#e08a2c"


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Draw the panels into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display here
    import matplotlib.pyplot as plt

    rows = table(report)
    shapes, clients = report["shapes"], report["clients"]
    columns = 3 if len(shapes) > 2 else len(shapes)
    panels_down = math.ceil(len(shapes) / columns)
    ratios = [r["ratio"] for s in rows.values() for r in s.values() if r["ratio"]]
    low = min([0.5, *ratios]) / 1.3
    high = max([2.0, *ratios]) * 1.6
    figure, axes = plt.subplots(
        panels_down,
        columns,
        sharey=True,
        squeeze=False,
        figsize=(5.2 * columns + 2.6, 0.34 * len(clients) * panels_down + 1.6),
    )
    labels = [c["name"] for c in clients]
    places = list(range(len(clients)))[::-1]  # the first client on top
    for index, axis in enumerate(axes.flat):
        if index >= len(shapes):
            axis.set_visible(False)
            continue
        shape = shapes[index]
        for place, client in zip(places, clients):
            row = rows[shape["key"]].get(client["key"])
            if row is None:
                continue
            if row["failed"] or not row["ratio"]:
                axis.text(low * 1.05, place, "FAILED", va="center", fontsize=8, color="#c00000")
                continue
            colour = COLOURS.get(client["key"], OTHER)
            axis.barh(place, row["ratio"], left=0, color=colour, height=0.72)
            axis.text(row["ratio"] * 1.04, place, f"{row['ratio']:.2f}x", va="center", fontsize=7)
        axis.axvline(1.0, color="#444444", linewidth=0.8, linestyle="--")
        axis.set_xscale("log")
        axis.set_xlim(low, high)
        ticks = [t for t in (0.25, 0.5, 1, 2, 4, 8, 16, 32) if low <= t <= high]
        axis.set_xticks(ticks, [f"{t:g}x" for t in ticks])
        axis.minorticks_off()
        axis.set_title(shape["title"], fontsize=9)
        axis.set_yticks(places, labels, fontsize=8)
        axis.grid(axis="x", color="#dddddd", linewidth=0.6)
        axis.set_axisbelow(True)
    title = "req/s relative to requests.Session in the same run (log scale; > 1x is faster)"
    if report.get("quick"):
        title += "\nquick smoke run on a loaded machine: indicative only"
    figure.suptitle(
        f"{title}\n{report['started']}, {report['machine']['python']}, "
        f"{report['machine']['nproc']} CPUs",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
