"""From the sections' JSON to what people read: a markdown table, targets, a chart.

Kept apart from the measuring code so a report can be re-rendered from saved
results (`python -m bench.report bench/results/summary.json`) without re-running
anything, and so the measuring modules carry no formatting.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

TARGETS = {
    "http_redis_c8_vs_floor": 0.60,
    "stream_ttft_overhead_p50_ms": 2.0,
    "stream_ttft_overhead_p99_ms": 10.0,
    "many_streams_errors": 0,
    "many_streams_rss_peak_mb": 300.0,
    "peer_speedup_c50": 20.0,
    "ap_wait_p50_c1_vs_rest": 1.1,
    "ap_vs_langgraph_dev_c1": 100.0,
    "ap_vs_langgraph_dev_c50": 2.0,
}
VARIANT_LABELS = {
    "embedded": "HTTP, embedded (SQLite)",
    "redis": "HTTP, Redis",
    "redis_postgres": "HTTP, Redis + Postgres",
    "redis_workers": "HTTP, Redis, 2 workers",
}
SHORT_LABELS = {
    "embedded": "emb",
    "redis": "redis",
    "redis_postgres": "r+pg",
    "redis_workers": "r 2w",
}


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    return str(value)


def floor_rates(summary: dict[str, Any]) -> dict[str, float]:
    """The floor per workload: InMemorySaver, in-process, concurrency 1."""
    rates: dict[str, float] = {}
    for row in (summary.get("floor") or {}).get("rows", []):
        if row.get("saver") == "inmemory" and row.get("concurrency") == 1:
            rates[row["workload"]] = row["turns_per_s"]
    return rates


def _http_row(summary: dict[str, Any], variant: str, workload: str, c: int) -> dict | None:
    facts = ((summary.get("http") or {}).get("variants") or {}).get(variant) or {}
    for row in facts.get("rows", []):
        if row["workload"] == workload and row["concurrency"] == c:
            return row
    return None


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured value and whether it is met (None: not measured)."""
    summary = measured(summary)
    out: list[dict[str, Any]] = []
    floors = floor_rates(summary)
    for workload in ("fresh", "session"):
        row = _http_row(summary, "redis", workload, 8)
        value = row["turns_per_s"] / floors[workload] if row and floors.get(workload) else None
        out.append(
            {
                "target": f"HTTP turns/s, c=8, Redis ({workload}) ≥ 60% of the floor",
                "value": None if value is None else f"{value:.0%}",
                "met": None if value is None else value >= TARGETS["http_redis_c8_vs_floor"],
            }
        )
    stream = summary.get("stream") or {}
    overhead = (stream.get("ttft") or {}).get("server_overhead") or {}
    for q, key in (("p50", "stream_ttft_overhead_p50_ms"), ("p99", "stream_ttft_overhead_p99_ms")):
        value = overhead.get(f"{q}_ms")
        out.append(
            {
                "target": f"streaming TTFT overhead {q} ≤ {TARGETS[key]:g} ms",
                "value": None if value is None else f"{value:.2f} ms",
                "met": None if value is None else value <= TARGETS[key],
            }
        )
    many = summary.get("many") or {}
    if many:
        n = many.get("streams")
        out.append(
            {
                "target": f"{n} streams: zero errors",
                "value": str(many["errors"]),
                "met": many["errors"] == 0,
            }
        )
        peak = many["rss_mb"]["peak"]
        out.append(
            {
                "target": f"{n} streams: server RSS ≤ 300 MB",
                "value": f"{peak:.0f} MB",
                "met": peak <= TARGETS["many_streams_rss_peak_mb"],
            }
        )
    saver = summary.get("checkpointer") or {}
    ratios, wanted = saver.get("ratios") or {}, saver.get("targets") or {}
    for key, label in (("redis_vs_sqlite", "SQLite (file)"), ("redis_vs_inmemory", "InMemory")):
        value, target = ratios.get(key), wanted.get(key)
        if value is None or target is None:
            continue
        out.append(
            {
                "target": f"Redis saver pairs/s ≥ {target:g}x {label}",
                "value": f"{value:.2f}x",
                "met": value >= target,
            }
        )
    peer = summary.get("peer") or {}
    for row in peer.get("comparison", []):
        if row["concurrency"] == 50:
            out.append(
                {
                    "target": "≥ 20x `langgraph dev` turns/s at c=50",
                    "value": f"{row['speedup']:.1f}x",
                    "met": row["speedup"] >= TARGETS["peer_speedup_c50"],
                }
            )
    out += _ap_targets(summary.get("ap") or {})
    return out


def _ap_row(rows: list[dict[str, Any]], client: str, c: int) -> dict[str, Any] | None:
    for row in rows:
        if row.get("client") == client and row.get("concurrency") == c and row.get("turns"):
            return row
    return None


AP_CLIENT_KEYS = (
    ("runs.wait", "wait"),
    ("runs.stream", "stream"),
    ("runs.wait exit", "wait_exit"),
    ("runs.wait 1req", "wait1"),
    ("runs.wait 1req exit", "wait1_exit"),
)
"""The section's SDK rows (`bench.agent_protocol`) and their keys in `ap_ratios`."""


def ap_ratios(ap: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per variant of our server, the Agent Protocol section's same-run ratios: p50s
    over the REST turn's at c=1, runs/s over `langgraph dev`'s (None: not measured)."""
    dev = (ap.get("langgraph_dev") or {}).get("rows") or []
    out: dict[str, dict[str, float | None]] = {}
    for variant, facts in (ap.get("variants") or {}).items():
        rows = facts.get("rows") or []
        if not rows:
            continue
        ratios: dict[str, float | None] = {}
        rest = _ap_row(rows, "rest", 1)
        for client, key in AP_CLIENT_KEYS:
            mine = _ap_row(rows, client, 1)
            ratios[f"{key}_p50_over_rest_c1"] = (
                mine["p50_ms"] / rest["p50_ms"] if mine and rest and rest["p50_ms"] else None
            )
            if key not in ("wait", "stream", "wait1"):
                continue  # `exit` rows: beside REST only (`langgraph dev` has no such row)
            for c in sorted({r["concurrency"] for r in rows}):
                mine, theirs = _ap_row(rows, client, c), _ap_row(dev, client, c)
                ratios[f"{key}_runs_per_s_over_langgraph_dev_c{c}"] = (
                    mine["runs_per_s"] / theirs["runs_per_s"]
                    if mine and theirs and theirs["runs_per_s"]
                    else None
                )
        out[variant] = ratios
    return out


def _ap_targets(ap: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets on `threads.create` + `runs.wait` (how Studio and Agent Chat UI
    start a conversation) and on the one-request `runs.wait` (the run makes the
    thread, as REST's new-session turn and RemoteGraph do)."""
    out: list[dict[str, Any]] = []
    limit = TARGETS["ap_wait_p50_c1_vs_rest"]
    for variant, ratios in ap_ratios(ap).items():
        for key, what in (("wait", "`runs.wait`"), ("wait1", "`runs.wait` (one request)")):
            value = ratios.get(f"{key}_p50_over_rest_c1")
            if value is not None:
                out.append(
                    {
                        "target": f"{what} p50, c=1, {variant}: ≤ {limit:g}x the REST turn's",
                        "value": f"{value:.2f}x",
                        "met": value <= limit,
                    }
                )
            for c, target in ((1, "ap_vs_langgraph_dev_c1"), (50, "ap_vs_langgraph_dev_c50")):
                value = ratios.get(f"{key}_runs_per_s_over_langgraph_dev_c{c}")
                if value is not None:
                    out.append(
                        {
                            "target": f"{what} runs/s, c={c}, {variant}: "
                            f"≥ {TARGETS[target]:g}x `langgraph dev`",
                            "value": f"{value:.1f}x",
                            "met": value >= TARGETS[target],
                        }
                    )
    return out


def _ap_lines(ap: dict[str, Any]) -> list[str]:
    lines = [
        "Agent Protocol (`langgraph_sdk` `threads.create` + `runs.wait` / `runs.stream` "
        "with `[values, messages-tuple]`, a new thread per run) beside the REST turn "
        "(`POST /api/chat/message`, a new session per turn) on the same server. "
        "First event: from the `runs.stream` call to the first `messages` event / "
        "the first one with text, p50 / p99.",
        "",
        "| server | client | c | runs/s | p50 ms | p95 ms | p99 ms | first event ms "
        "| first text ms | server CPU ms/run | client CPU ms/run | errors |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    groups: list[tuple[str, dict[str, Any]]] = [
        (f"agent-server, {variant}", facts) for variant, facts in (ap.get("variants") or {}).items()
    ]
    groups.append(("`langgraph dev`", ap.get("langgraph_dev") or {}))
    for label, facts in groups:
        if "skipped" in facts:
            lines.append(f"| {label} | skipped: {facts['skipped']} |")
            continue
        for row in facts.get("rows", []):
            cells = []
            for name in ("first_message", "first_text"):
                part = row.get(name)
                cells.append(f"{_fmt(part['p50_ms'])} / {_fmt(part['p99_ms'])}" if part else "-")
            lines.append(
                f"| {label} | {row['client']} | {row['concurrency']} | "
                f"{_fmt(row['runs_per_s'])} | {_fmt(row['p50_ms'])} | {_fmt(row['p95_ms'])} | "
                f"{_fmt(row['p99_ms'])} | {cells[0]} | {cells[1]} | "
                f"{_fmt(row.get('server_cpu_ms_per_run'), 2)} | "
                f"{_fmt(row.get('client_cpu_ms_per_run'), 2)} | {row['errors']} |"
            )
    lines.append("")
    return lines


def measured(summary: dict[str, Any]) -> dict[str, Any]:
    """`summary` without the sections that failed (each holds only its `error`, which is in
    its JSON and was printed with its traceback), so one failed section cannot stop the
    table and chart of the others."""
    return {k: v for k, v in summary.items() if not (isinstance(v, dict) and "error" in v)}


def markdown(summary: dict[str, Any]) -> str:
    lines: list[str] = []
    for name, facts in summary.items():
        if isinstance(facts, dict) and "error" in facts:
            lines += [f"Section {name} failed: {facts['error']}", ""]
    summary = measured(summary)
    meta = summary.get("meta") or {}
    env = meta.get("environment") or {}
    lines.append(
        f"Run {meta.get('started_at', '?')}{' (--quick)' if meta.get('quick') else ''}: "
        f"Python {env.get('python')}, {env.get('cpus')} CPUs, {env.get('event_loop')}, "
        f"{meta.get('duration_s', '?')} s per measurement."
    )
    lines.append("")
    floors = floor_rates(summary)
    floor = summary.get("floor") or {}
    http = (summary.get("http") or {}).get("variants") or {}
    if floor or http:
        lines += [
            'Non-streaming turns ("Calculate 10 * 20": offline model, one calculator call, '
            "answer, persist). x floor = turns/s / the floor's (in-process, InMemorySaver, "
            "c=1) for the same workload, measured in the same run.",
            "",
            "| what | workload | c | turns/s | x floor | p50 ms | p95 ms | p99 ms "
            "| server CPU ms/turn | errors |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for row in floor.get("rows", []):
            if "skipped" in row:
                lines.append(f"| in-process, {row['saver']} saver | skipped: {row['skipped']} |")
                continue
            what = "**floor**" if row["saver"] == "inmemory" else "in-process"
            what += f" ({row['saver']} saver)"
            lines.append(_turn_line(what, row, floors, row.get("cpu_ms_per_turn")))
        for variant, facts in http.items():
            label = VARIANT_LABELS.get(variant, variant)
            if "skipped" in facts:
                lines.append(f"| {label} | skipped: {facts['skipped']} |")
                continue
            label += f" [{facts.get('hot_state', '?')}]"
            for row in facts.get("rows", []):
                lines.append(_turn_line(label, row, floors, row.get("server_cpu_ms_per_turn")))
        lines.append("")
    stream = summary.get("stream") or {}
    if stream:
        up = stream["upstream"]
        lines += [
            f"Streaming overhead ({stream['streams']} streams, {stream['tokens_per_stream']:.0f} "
            f"tokens each; upstream: first token after {up['first_token_latency_s'] * 1000:g} ms, "
            f"then {up['tokens_per_second']:g} tokens/s). Each column is time minus what the "
            "upstream was configured to spend; the last four are differences of percentiles. "
            "The bare proxy (`bench/proxy.py`) relays the upstream's bytes and does nothing "
            "else, on our server's stack: what one more Python HTTP hop costs here by itself.",
            "",
            "| p50 / p99, ms | direct to upstream | bare proxy | in-process graph | via server "
            "| **server - direct** | bare proxy - direct | server - bare proxy "
            "| server - in-process |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for key, label in (("ttft", "time to first token"), ("per_token", "per token")):
            part = stream[key]
            cells = []
            for name in (
                "direct_minus_configured",
                "via_proxy_minus_configured",
                "in_process_minus_configured",
                "via_server_minus_configured",
                "server_overhead",
                "proxy_overhead",
                "server_over_proxy",
                "server_over_in_process",
            ):
                values = part.get(name)
                cell = (
                    f"{_fmt(values['p50_ms'], 2)} / {_fmt(values['p99_ms'], 2)}" if values else "-"
                )
                cells.append(f"**{cell}**" if name == "server_overhead" else cell)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if stream.get("errors"):
            lines.append(f"\nStream errors: {stream['errors']} ({stream['error_samples']})")
        lines.append("")
    many = summary.get("many") or {}
    if many:
        ttft = many["ttft_ms"]
        rss = many["rss_mb"]
        lines += [
            "| many streams | errors | streaming together | TTFT p50 / p99 | "
            "server RSS before / peak | server CPU busy |",
            "|---|--:|--:|--:|--:|--:|",
            f"| {many['streams']} x ~{many['target_stream_seconds']:g} s "
            f"({many.get('variant', 'embedded')}) | {many['errors']} | "
            f"{many['streaming_together']} | {_fmt(ttft['p50'], 0)} / {_fmt(ttft['p99'], 0)} ms | "
            f"{rss['before']:.0f} / {rss['peak']:.0f} MB | "
            f"{many.get('server_cpu_utilisation', float('nan')):.0%} |",
            "",
        ]
    checkpointer = summary.get("checkpointer") or {}
    if checkpointer.get("results"):
        lines += [
            f"Checkpointer (`bench/checkpointer.py`, {checkpointer.get('pairs')} "
            "aput + aget_tuple pairs):",
            "",
            "| saver | pairs/s | p50 ms | p99 ms |",
            "|---|--:|--:|--:|",
        ]
        for name, row in checkpointer["results"].items():
            lines.append(
                f"| {name} | {_fmt(row['pairs_per_s'], 0)} | {_fmt(row['p50_ms'], 3)} "
                f"| {_fmt(row['p99_ms'], 3)} |"
            )
        lines.append("")
    elif checkpointer:
        lines += [f"Checkpointer: {checkpointer.get('skipped') or checkpointer.get('error')}", ""]
    peer = summary.get("peer") or {}
    if peer.get("comparison"):
        lines += [
            "| peer (fresh thread per run) | c | agent-server turns/s | `langgraph dev` turns/s "
            "| speed-up |",
            "|---|--:|--:|--:|--:|",
        ]
        for row in peer["comparison"]:
            lines.append(
                f"| | {row['concurrency']} | {_fmt(row['agent_server_turns_per_s'])} | "
                f"{_fmt(row['langgraph_dev_turns_per_s'])} | {_fmt(row['speedup'])}x |"
            )
        lines.append("")
    ap = summary.get("ap") or {}
    if ap.get("variants"):
        lines += _ap_lines(ap)
    checks = targets(summary)
    if checks:
        lines += ["| target | measured | met |", "|---|--:|:-:|"]
        for check in checks:
            met = {True: "yes", False: "**no**", None: "-"}[check["met"]]
            lines.append(f"| {check['target']} | {check['value'] or '-'} | {met} |")
    return "\n".join(lines).rstrip() + "\n"


def _turn_line(what: str, row: dict[str, Any], floors: dict[str, float], cpu: Any) -> str:
    floor = floors.get(row["workload"])
    ratio = f"{row['turns_per_s'] / floor:.2f}" if floor else "-"
    workload = "fresh" if row["turns_per_session"] == 1 else f"{row['turns_per_session']}/session"
    return (
        f"| {what} | {workload} | {row['concurrency']} | {_fmt(row['turns_per_s'])} | {ratio} | "
        f"{_fmt(row['p50_ms'])} | {_fmt(row['p95_ms'])} | {_fmt(row['p99_ms'])} | "
        f"{_fmt(cpu, 2)} | {row['errors']} |"
    )


def chart(summary: dict[str, Any], path: Path) -> None:
    """summary.png: turns/s against the floor, streaming overheads against their
    targets, and the server's RSS while the many streams were open."""
    summary = measured(summary)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(21, 6), gridspec_kw={"width_ratios": [2.2, 1, 1]})
    _turns_panel(axes[0], summary)
    _stream_panel(axes[1], summary)
    _rss_panel(axes[2], summary)
    meta = summary.get("meta") or {}
    fig.suptitle(
        f"agent-server benchmark {meta.get('started_at', '')}"
        f"{' (quick)' if meta.get('quick') else ''}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _turns_panel(ax: Any, summary: dict[str, Any]) -> None:
    floors = floor_rates(summary)
    http = (summary.get("http") or {}).get("variants") or {}
    labels: list[str] = []
    values: list[float] = []
    colors: list[str] = []
    palette = {"fresh": "tab:blue", "session": "tab:orange"}
    for workload in ("fresh", "session"):
        if workload in floors:
            labels.append(f"floor {workload}")
            values.append(floors[workload])
            colors.append("tab:green")
        for variant, facts in http.items():
            for row in facts.get("rows", []):
                if row["workload"] == workload:
                    labels.append(f"{SHORT_LABELS.get(variant, variant)} c={row['concurrency']}")
                    values.append(row["turns_per_s"])
                    colors.append(palette[workload])
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)), labels, fontsize=7, rotation=90)
    for workload, rate in floors.items():
        ax.axhline(
            0.6 * rate, color=palette.get(workload, "grey"), linestyle="--", linewidth=1,
            label=f"60% of floor ({workload})",
        )  # fmt: skip
    ax.set_ylabel("turns/s")
    ax.set_title("Non-streaming turns/s (blue: fresh session, orange: long sessions)")
    if floors:
        ax.legend(fontsize=8)


def _stream_panel(ax: Any, summary: dict[str, Any]) -> None:
    stream = summary.get("stream") or {}
    if not stream:
        ax.set_axis_off()
        return
    labels = ["TTFT p50", "TTFT p99", "token p50", "token p99"]
    series = [
        ("server - direct", "server_overhead", "tab:purple"),
        ("in-process graph - direct", None, "tab:green"),
        ("bare proxy - direct", "proxy_overhead", "tab:grey"),
    ]
    width = 0.8 / len(series)
    for offset, (name, key, color) in enumerate(series):
        values = []
        for part, q in (
            ("ttft", "p50"),
            ("ttft", "p99"),
            ("per_token", "p50"),
            ("per_token", "p99"),
        ):
            section = stream[part]
            if key is not None:
                values.append((section.get(key) or {}).get(f"{q}_ms", float("nan")))
            else:  # the graph's own overhead over calling the upstream directly
                local = section.get("in_process_minus_configured") or {}
                direct = section["direct_minus_configured"]
                values.append(local.get(f"{q}_ms", float("nan")) - direct[f"{q}_ms"])
        xs = [i + (offset - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, values, width=width, color=color, label=name)
    ax.set_xticks(range(len(labels)), labels)
    ax.axhline(2.0, color="tab:red", linestyle="--", linewidth=1, label="TTFT p50 target 2 ms")
    ax.axhline(10.0, color="tab:red", linestyle=":", linewidth=1, label="TTFT p99 target 10 ms")
    ax.set_ylabel("ms added over calling the upstream directly")
    ax.set_title("Streaming overhead")
    ax.legend(fontsize=8)


def _rss_panel(ax: Any, summary: dict[str, Any]) -> None:
    many = summary.get("many") or {}
    series = (many.get("rss_mb") or {}).get("series") or []
    if not series:
        ax.set_axis_off()
        return
    ax.plot([t for t, _ in series], [r for _, r in series], color="tab:brown")
    ax.axhline(300, color="tab:red", linestyle="--", linewidth=1, label="target 300 MB")
    ax.set_xlabel("s since the streams started")
    ax.set_ylabel("server RSS, MB")
    ax.set_title(
        f"{many['streams']} concurrent streams: {many['errors']} errors, "
        f"TTFT p99 {many['ttft_ms']['p99']:.0f} ms"
    )
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Re-render a saved benchmark summary")
    parser.add_argument("summary", type=Path, nargs="?", default=Path("bench/results/summary.json"))
    parser.add_argument("--png", type=Path, help="also write the chart here")
    args = parser.parse_args(argv)
    summary = json.loads(args.summary.read_text())
    print(markdown(summary))
    if args.png:
        chart(summary, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
