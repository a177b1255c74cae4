"""``index.html`` of an ``nnfc analyze report``: every figure with its one-line summary, the
frontier's points as a table, links to the JSON — static, relative links only, so it opens from
disk without a server."""

from __future__ import annotations

import html
from typing import Any

from nnfc.analysis.plotting import percent

TITLES = {
    "frontier": "Frontier: metric against measured latency, and the budget each limit needs",
    "activation": "Actual activation ratio vs limit (seen and unseen tasks; Fig. 11)",
    "gates": "Similarity of generated gates between tasks and between limits (Fig. 15)",
    "predictor": "Predictor accuracy vs number of profiled subnets (Fig. 13)",
    "training": "Metric vs training epochs (Fig. 12)",
    "environments": "Latency in different execution environments (Fig. 2)",
}

STYLE = """body{font-family:system-ui,sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;
color:#111}figure{margin:1.5em 0 2.5em}img{max-width:100%;border:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .6em;
text-align:right}th{background:#eee}.err{color:#a00}code{background:#f3f3f3;padding:0 .2em}
nav a{margin-right:1em}"""


def _frontier_table(data: dict[str, Any]) -> str:
    metric = html.escape(data["metric_name"])
    extra = data.get("by_precision") or {}
    head = ("<tr><th>limit</th><th>activation</th><th>measured latency (ms)</th>"
            "<th>predicted (ms)</th><th>--lat it needs (ms)</th><th>memory (MB)</th>"
            f"<th>{metric}</th>"
            + "".join(f"<th>{p} latency (ms)</th><th>{p} {metric}</th>" for p in extra)
            + "</tr>")
    rows = []
    for i, p in enumerate(data["points"]):
        cells = [percent(p["limit"]), f"{p['activation_ratio']:.3f}", _ms(p["latency_ms"]),
                 f"{p['predicted_latency_ms']:.3f}", f"{p['budget_ms']:.3f}",
                 f"{p['memory_mb']:.2f}", f"{p['metric']:.3f}"]
        for q in extra.values():
            cells += [_ms(q[i]["latency_ms"]), f"{q[i]['metric']:.3f}"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def index_html(title: str, sections: list[dict[str, Any]], command: str) -> str:
    """``sections``: ``{"name", "summary", "seconds", "data" | "error"}`` in report order."""
    nav = " ".join(f'<a href="#{s["name"]}">{s["name"]}</a>' for s in sections)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>"
             f"{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p>Made with <code>{html.escape(command)}</code>."
             f"</p><nav>{nav}</nav>"]
    for s in sections:
        name = s["name"]
        parts.append(f'<section id="{name}"><h2>{html.escape(TITLES.get(name, name))}</h2>')
        if "error" in s:
            parts.append(f'<p class=err>Not made: {html.escape(s["error"])}</p></section>')
            continue
        parts.append(f'<figure><img src="{name}.png" alt="{html.escape(TITLES.get(name, name))}">'
                     f"<figcaption>{html.escape(s['summary'])} ({s['seconds']:.1f} s; data: "
                     f'<a href="{name}.json">{name}.json</a>)</figcaption></figure>')
        if name == "frontier":
            parts.append(_frontier_table(s["data"]))
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
