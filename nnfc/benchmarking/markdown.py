"""A Markdown table of a bench run, for ``$GITHUB_STEP_SUMMARY`` or a pull-request comment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnfc.benchmarking.outputs import write_text
from nnfc.benchmarking.report_rows import (changes_by_metric, entry_values, format_change,
                                           format_value, metric_label, verdict)

MARKER = "<!-- nnfc bench -->"


def markdown(run: dict[str, Any]) -> str:
    s = run["settings"]
    has_eval = any(e.get("eval") for e in run["artifacts"])
    head = ["artifact", "target", "latency", "Δ latency [CI]", "memory", "Δ memory"]
    if has_eval:
        head += ["metric", "Δ metric"]
    head += ["verdict"]
    lines = [MARKER, "### nnfc bench", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in run["artifacts"]:
        ch = changes_by_metric(e)
        v = entry_values(e)
        verdicts = [verdict(ch.get(k)) for k in ("lat", "mem", "acc")]
        worst = ("REGRESSION" if "REGRESSION" in verdicts or e.get("violations") else
                 "improved" if "improved" in verdicts else
                 "ok" if any(x == "ok" for x in verdicts) else "measured")
        if e.get("violations"):
            worst = "OVER BUDGET" if "REGRESSION" not in verdicts else worst
        row = [f"`{e['name']}`", e["target"], format_value("lat", v["lat"]),
               format_change(ch.get("lat")) if ch or not run.get("baseline") else "no baseline",
               format_value("mem", v["mem"]), format_change(ch.get("mem")) if ch else "-"]
        if has_eval:
            row += [f"{metric_label('acc', e)} {format_value('acc', v['acc'])}"
                    if v["acc"] is not None else "-", format_change(ch.get("acc")) if ch else "-"]
        row += [f"**{worst}**" if worst in ("REGRESSION", "OVER BUDGET") else worst]
        lines.append("| " + " | ".join(row) + " |")
    load = run["host"].get("load_before")
    lines += ["", f"Latency: median of {s['rounds']} rounds of ≥ {s['min_round_ms']:g} ms "
              f"(batch 1); Δ compares the rounds' lower quartiles, with its "
              f"{s['confidence']:.0%} confidence interval"
              + (f" vs `{run['baseline']}`" if run.get("baseline") else "")
              + f". Thresholds: latency +{100 * s['thresholds']['lat']:g}%, memory "
              f"+{100 * s['thresholds']['mem']:g}%, metric −{s['thresholds']['acc']:g} pt. "
              f"Host {run['host'].get('hostname')} ({run['host'].get('cpus')} CPUs"
              + (f", load {load[0]:.2f}" if load else "") + ").", ""]
    if run.get("regression"):
        lines[3:3] = ["**A significant regression beyond the thresholds was found.**", ""]
    return "\n".join(lines)


def write_markdown(path: str | Path, run: dict[str, Any]) -> Path:
    return write_text(path, markdown(run), MARKER, "Markdown summary")
