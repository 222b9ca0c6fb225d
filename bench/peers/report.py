"""bench/results/peers.md from the numbers bench/peers/run.py gathered (``peers.json``).

``python bench/peers/report.py [bench/.run/peers.json]`` rewrites the markdown (and the chart)
from saved numbers without measuring again.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

FLOOR = "floor"


def summarize(entry: dict[str, Any]) -> dict[str, Any]:
    """One client on one shape: median req/s, connections per run, CPU per request, failures.

    A client with any failure (warm-up included), or one that could not run, is ``failed``.
    """
    runs = entry.get("runs", [])
    warmup = entry.get("warmup", {})
    failures = sum(run["failures"] for run in runs) + warmup.get("failures", 0)
    errors = [entry.get("error", ""), warmup.get("error", "")] + [run["error"] for run in runs]
    rates = [run["done"] / run["elapsed"] for run in runs if run["elapsed"] > 0]
    cpus = [run["cpu"] / run["done"] for run in runs if run["done"]]
    return {
        "failed": bool(entry.get("error")) or failures > 0 or not runs,
        "rps": statistics.median(rates) if rates else 0.0,
        "connections": statistics.median(run["connections"] for run in runs) if runs else None,
        "warmup_connections": warmup.get("connections"),
        "cpu_us": statistics.median(cpus) * 1e6 if cpus else None,
        "requests": sum(run["done"] for run in runs),
        "failures": failures,
        "error": next((error for error in errors if error), ""),
    }


def table(report: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """shape key -> client key -> summary, with ``ratio`` (req/s over the baseline's) and
    ``rank`` (1 = the most req/s among the clients that did not fail, the floor left out)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for shape, per_client in report["results"].items():
        rows = {key: summarize(entry) for key, entry in per_client.items()}
        base = rows.get(report["baseline"])
        base_rps = base["rps"] if base and not base["failed"] else 0.0
        ranked = sorted(
            (key for key, row in rows.items() if not row["failed"] and key != FLOOR),
            key=lambda key: -rows[key]["rps"],
        )
        for key, row in rows.items():
            row["ratio"] = row["rps"] / base_rps if base_rps and not row["failed"] else None
            row["rank"] = ranked.index(key) + 1 if key in ranked else None
        out[shape] = rows
    return out


def _num(value: float | None, fmt: str, missing: str = "–") -> str:
    return missing if value is None else format(value, fmt)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """Write the report: context, a summary of ratios, a table per shape, notes."""
    rows = table(report)
    names = {c["key"]: c["name"] for c in report["clients"]}
    budget, m = report["budget"], report["machine"]
    lines = ["# fastpool beside its peers: GETs per second against nginx on loopback", ""]
    if report["quick"]:
        lines += [
            (
                "> **Quick smoke run** (`--quick`: runs of "
                f"{budget['seconds']} s) on a 2-core machine **loaded by other work** at the time: "
                "the figures are indicative only. The full run (`python bench/peers/run.py`, about "
                "10 minutes) on a quiet machine gives the numbers to quote."
            ),
            "",
        ]
    if report.get("note"):
        lines += [f"> {report['note']}", ""]
    load = report["load"]
    lines += [
        (
            f"- Date: {report['started']}; the run took {report['seconds']} s "
            f"(load average {load['before'][0]:.2f} before, {load['after'][0]:.2f} after)."
        ),
        (
            f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['os']}; {m['python']}; {m['openssl']}; "
            f"nginx {m['nginx']} (1 worker process, HTTP/1.1, keep-alive, access log off)."
        ),
        "- Versions: "
        + ", ".join(f"{name} {version}" for name, version in sorted(report["versions"].items()))
        + ".",
        (
            f"- Method: per shape, each client is opened once, warmed up (at least two visits per "
            f"host, at most {budget['warmup_seconds']} s), then measured in {budget['repeats']} runs "
            f"of at most {budget['requests']} requests or {budget['seconds']} s, interleaved across "
            "the clients in a rotating order. req/s is the median of the runs; **vs requests** is "
            "that over `requests.Session`'s median in the same run (> 1 is faster); **rank** orders "
            "the clients that did not fail, the floor left out. **new conns/run** is the median "
            "of the TCP connections nginx accepted during one measured run (stub_status "
            "`accepts`), **warm-up conns** those of the warm-up. **CPU µs/req** is the client "
            "process's CPU time per request (nginx not included). Every answer's status (200) and "
            "body length are checked; TLS is verified against the bench CA; each request has a "
            f"{budget['timeout']:g} s timeout, and a worker still busy 1.5x that long after a "
            "run's end is counted as hung (the client's later runs in that shape are skipped). "
            "A client with any failure is marked FAILED with its first error. Each client keeps "
            "its library's defaults (see the notes)."
        ),
        "",
        "## Summary: req/s relative to requests.Session (same run)",
        "",
    ]
    shapes = report["shapes"]
    lines.append("| client | " + " | ".join(s["key"] for s in shapes) + " |")
    lines.append("|---|" + "---:|" * len(shapes))
    for client in report["clients"]:
        cells = []
        for shape in shapes:
            row = rows[shape["key"]].get(client["key"])
            cells.append(
                ""
                if row is None
                else "FAILED"
                if row["failed"]
                else _num(row["ratio"], ".2f") + "x"
            )
        lines.append(f"| {client['name']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- `{s['key']}`: {s['title']}" for s in shapes]
    lines.append("")

    for shape in shapes:
        lines += [f"## {shape['title']} (`{shape['key']}`)", ""]
        lines.append(
            "| client | req/s | vs requests | rank | new conns/run | warm-up conns "
            "| CPU µs/req | requests measured | failures |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for key, row in rows[shape["key"]].items():
            if row["failed"]:
                rate, ratio = f"FAILED ({row['rps']:,.0f})", "–"
            else:
                rate, ratio = f"{row['rps']:,.0f}", _num(row["ratio"], ".2f") + "x"
            lines.append(
                f"| {names.get(key, key)} | {rate} | {ratio} | {_num(row['rank'], 'd')} "
                f"| {_num(row['connections'], 'g')} | {_num(row['warmup_connections'], 'd')} "
                f"| {_num(row['cpu_us'], '.0f')} | {row['requests']:,} | {row['failures']} |"
            )
        errors = [(key, row["error"]) for key, row in rows[shape["key"]].items() if row["error"]]
        if errors:
            lines.append("")
            lines += [f"- {names.get(key, key)} failed: `{error}`" for key, error in errors]
        lines.append("")

    lines += ["## Notes on the clients", ""]
    lines += [f"- **{c['name']}**: {c['note']}" for c in report["clients"]]
    lines += [
        "",
        "Made by `python bench/peers/run.py"
        + (" --quick" if report["quick"] else "")
        + "` (bench/peers/README.md); the raw numbers are in bench/.run/peers.json.",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str]) -> int:
    from chart import write_chart

    source = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / ".run/peers.json"
    report = json.loads(source.read_text())
    results = Path(__file__).resolve().parents[1] / "results"
    write_markdown(report, results / "peers.md")
    write_chart(report, results / "peers.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
