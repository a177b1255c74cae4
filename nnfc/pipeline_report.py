"""``nnfc run``'s JUnit and Markdown: one test case / table row per scenario's compile (failed,
over budget, within budget), then ``nnfc bench``'s per artifact x metric."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from nnfc.benchmarking.outputs import write_text

SUITE = "nnfc run"
MARKER = "<!-- nnfc run -->"


def junit_xml(result: dict[str, Any], bench_run: dict[str, Any] | None) -> str:
    if bench_run is not None:
        from nnfc.benchmarking.junit import junit_xml as bench_junit
        suites = ET.fromstring(bench_junit(bench_run).split("\n", 1)[1])
    else:
        suites = ET.Element("testsuites")
    suites.set("name", SUITE)
    suite = ET.Element("testsuite", name=f"{SUITE} compile")
    failures = 0
    for row in result["scenarios"]:
        case = ET.SubElement(suite, "testcase", classname=row["name"], name="compile")
        text = (f"{row['task_text']} on {row['target']}: "
                + (row.get("error") or f"limit {row['limit']:.0%}, {row['status']}"
                   + ("" if row.get("measured") else " (predicted; not measured here)")))
        if row["status"] != "within budget":
            failures += 1
            ET.SubElement(case, "failure", message=text, type=row["status"]).text = text
        ET.SubElement(case, "system-out").text = text
    suite.set("tests", str(len(result["scenarios"])))
    suite.set("failures", str(failures))
    suites.insert(0, suite)
    total = sum(int(s.get("tests", 0)) for s in suites)
    suites.set("tests", str(total))
    suites.set("failures", str(sum(int(s.get("failures", 0)) for s in suites)))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def markdown(result: dict[str, Any], bench_run: dict[str, Any] | None) -> str:
    lines = [MARKER, "### nnfc run", "", "| scenario | task | target | budget | status |",
             "|---|---|---|---|---|"]
    for row in result["scenarios"]:
        budget = ", ".join(x for x in (f"≤ {row['latency']}" if row["latency"] else "",
                                       f"≤ {row['memory']}" if row["memory"] else "") if x)
        status = row["status"] if row["status"] == "within budget" else f"**{row['status']}**"
        task = row["task_text"] + (f" → {','.join(row['task'])}" if row.get("task") and
                                   ",".join(row["task"]) != row["task_text"] else "")
        lines.append(f"| `{row['name']}` | {task} | {row['target']} | {budget} | {status}"
                     + (f": {row['error']}" if row.get("error") else "") + " |")
    lines.append("")
    if bench_run is not None:
        from nnfc.benchmarking.markdown import markdown as bench_markdown
        lines.append(bench_markdown(bench_run))
    return "\n".join(lines)


def write_reports(result: dict[str, Any], bench_run: dict[str, Any] | None,
                  junit: str | Path, markdown_path: str | Path) -> None:
    """Write the JUnit XML and the Markdown (``-``: standard output)."""
    write_text(junit, junit_xml(result, bench_run), f'name="{SUITE}"', "JUnit report")
    write_text(markdown_path, markdown(result, bench_run), MARKER, "Markdown summary")
