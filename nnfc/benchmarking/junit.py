"""JUnit XML of a bench run: one test case per artifact x metric (latency, memory, the
evaluation metric); a significant regression beyond the threshold or an exceeded budget is a
failure. CI systems (GitHub test reporters, GitLab, Jenkins) show these per test."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from nnfc.benchmarking.outputs import write_text
from nnfc.benchmarking.report_rows import (changes_by_metric, entry_values, format_change,
                                           format_value, metric_label, threshold_text)

SUITE = "nnfc bench"


def junit_xml(run: dict[str, Any]) -> str:
    suites = ET.Element("testsuites", name=SUITE)
    suite = ET.SubElement(suites, "testsuite", name=SUITE, timestamp=run.get("created", ""))
    tests = failures = 0
    for entry in run["artifacts"]:
        changes = changes_by_metric(entry)
        values = entry_values(entry)
        for key in ("lat", "mem", "acc"):
            if key == "acc" and values["acc"] is None:
                continue
            tests += 1
            label = metric_label(key, entry)
            case = ET.SubElement(suite, "testcase", classname=entry["name"], name=label,
                                 time=f"{(values['lat'] or 0) / 1e3:.6f}" if key == "lat"
                                 else "0")
            change = changes.get(key)
            lines = [f"{label}: {format_value(key, values[key])}"]
            if change and change.get("change") is not None:
                lines.append(f"vs baseline {format_value(key, change['baseline'])}: "
                             f"{format_change(change)} ({change['method']}; threshold "
                             f"{threshold_text(key, change['threshold'])})")
            problems = []
            if change and change.get("regression"):
                problems.append(f"{label} regressed {format_change(change)} beyond the "
                                f"{threshold_text(key, change['threshold'])} threshold")
            word = {"lat": "latency", "mem": "memory"}.get(key)
            problems += [v for v in entry.get("violations", []) if word and v.startswith(word)]
            if problems:
                failures += 1
                failure = ET.SubElement(case, "failure", message="; ".join(problems),
                                        type="regression")
                failure.text = "\n".join(lines)
            ET.SubElement(case, "system-out").text = "\n".join(lines)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suites.set("tests", str(tests))
    suites.set("failures", str(failures))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def write_junit(path: str | Path, run: dict[str, Any]) -> Path:
    return write_text(path, junit_xml(run), f'name="{SUITE}"', "JUnit report")
