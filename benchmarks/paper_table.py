"""The paper's comparison (NN-Factory §5.2, Table 3 / Table 4): NN-Factory vs Retrain vs
Prune&Tune per edge scenario (task, target, LAT, MEM).

For every scenario it runs the real commands — ``nnfc compile``, ``nnfc baseline retrain``,
``nnfc baseline prune-tune`` — each in its own process, then writes

- ``<results>/table.md``: per method ΔLat and ΔMem relative to the budget (measured), the
  accuracy (mAP@0.5 for detection families) on the test split, and the customization wall time
  (compile vs training / pruning + fine-tuning), plus the preparation/customization summary;
- ``<results>/accuracy_vs_latency.png``: accuracy vs measured latency per method and target;
- ``<results>/results.json``: every row.

Results are cached by scenario (``<results>/<scenario>/<method>/report.json``): a re-run only does
what is missing. Retrain ignores the budget, so it trains once per task (checkpoint
``<results>/retrain-ckpt/<task>-e<epochs>``) and only measures per scenario; interrupted training
resumes from its last epoch. A target without a predictor profile is profiled first (once, part of
the factory's preparation, not of any scenario's customization).

    .venv/bin/python benchmarks/paper_table.py                 # the full table (factory recipe)
    .venv/bin/python benchmarks/paper_table.py --retrain-epochs 8 --finetune-epochs 1   # reduced
    .venv/bin/python benchmarks/paper_table.py --family attrod     # detection (mAP@0.5)

Reduced runs are cached apart from full ones (the epochs are part of the cache key) and the table
says which epochs it used.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("nn-factory", "retrain", "prune-tune")
LABELS = {"nn-factory": "NN-Factory", "retrain": "Retrain", "prune-tune": "Prune&Tune"}


@dataclass(frozen=True)
class Scenario:
    """One edge scenario: a task (attributes), a target, a latency and a memory budget."""

    task: str              # comma-separated attributes
    target: str
    lat: str               # as the CLI takes it, e.g. "0.1ms"
    mem: str               # e.g. "500KB"

    @property
    def key(self) -> str:
        return f"{self.task.replace(',', '+')}_{self.target}_{self.lat}_{self.mem}"


#: NumVQA on the shipped ResNet factory (full model: 1.26 MB; ~0.22 ms on the desktop target and
#: 0.14-0.26 ms on android = LiteRT/XNNPACK on this CPU).
#: Three tasks (one unseen by the factory: only-two,odd), each on desktop and android, plus two
#: tighter desktop budgets. Retrain trains once per task.
NUMVQA_SCENARIOS = [
    Scenario("has,0", "desktop", "0.12ms", "600KB"),
    Scenario("has,0", "desktop", "0.07ms", "200KB"),
    Scenario("only-two,odd", "desktop", "0.15ms", "800KB"),
    Scenario("only-three,2", "desktop", "0.09ms", "300KB"),
    Scenario("only-three,2", "desktop", "0.065ms", "150KB"),
    Scenario("has,0", "android", "0.1ms", "500KB"),
    Scenario("only-two,odd", "android", "0.12ms", "400KB"),
    Scenario("only-three,2", "android", "0.07ms", "200KB"),
]

#: AttrOD (attributed object detection, mAP@0.5) on the shipped default factory (full supernet +
#: decode graph: ~6.3 ms and ~12.5 MB on the desktop target; the assembler's subnets run in
#: 2-4 ms on desktop and android = LiteRT/XNNPACK on this CPU, in ~1.5 MB). Three
#: tasks, each on desktop and android: a seen one, a seen colour set (the paper's
#: "Motorcycle {2,3,4}") and one the factory never trained on (green,car).
ATTROD_SCENARIOS = [
    Scenario("red,car", "desktop", "3.5ms", "2MB"),
    Scenario("yellow,green,motorcycle", "desktop", "2.8ms", "1.5MB"),
    Scenario("green,car", "desktop", "3ms", "2MB"),
    Scenario("red,car", "android", "3.5ms", "2MB"),
    Scenario("yellow,green,motorcycle", "android", "3ms", "1.5MB"),
    Scenario("green,car", "android", "3.2ms", "2MB"),
]


@dataclass(frozen=True)
class Family:
    """A task family's scenarios: the factory they customise and where their results go."""

    bundle: str                 # relative to the repository root
    scenarios: list[Scenario]
    results: str                # relative to the repository root
    test_split: str             # what the accuracy column is measured on


FAMILIES = {
    "numvqa": Family("factories/numvqa-resnet", NUMVQA_SCENARIOS,
                     "benchmarks/results/paper_table",
                     "200 test images per task (the factory's held-out split)"),
    "attrod": Family("factories/default", ATTROD_SCENARIOS,
                     "benchmarks/results/paper_table_attrod",
                     "mAP@0.5 over 200 procedural test scenes per task (the factory's test "
                     "split)"),
}


def nnfc(*args: str) -> list[str]:
    return [sys.executable, "-m", "nnfc.cli", *args]


def run(cmd: list[str], log) -> None:
    """Run a command (its own progress bars on stderr); one clear failure otherwise."""
    log("$ " + " ".join(["nnfc" if c == "nnfc.cli" else c for c in cmd[2:]]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    proc = subprocess.run(cmd, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise MethodFailed(f"command failed ({proc.returncode}): {' '.join(cmd)}")


class MethodFailed(Exception):
    """One method's command failed on one scenario (e.g. a budget it cannot meet): the table
    goes on with the other scenarios and methods and lists the failure."""


def ensure_profile(bundle: Path, target: str, subnets: int, log) -> float:
    """Profile ``target`` once when its predictor is missing; returns the seconds it took."""
    if (bundle / "profiles" / f"{target}.json").is_file():
        return 0.0
    t0 = time.perf_counter()
    run(nnfc("profile", "--bundle", str(bundle), "--target", target, "--subnets", str(subnets)),
        log)
    return time.perf_counter() - t0


def method_dir(results: Path, sc: Scenario, method: str, epochs: dict[str, int | None]) -> Path:
    tag = ""
    if method == "retrain" and epochs["retrain"]:
        tag = f"-e{epochs['retrain']}"
    if method == "prune-tune" and epochs["finetune"]:
        tag = f"-e{epochs['finetune']}"
    return results / sc.key / (method + tag)


def run_method(bundle: Path, results: Path, sc: Scenario, method: str,
               epochs: dict[str, int | None], log) -> dict[str, Any]:
    """The method's report for the scenario, from the cache or by running its command."""
    out = method_dir(results, sc, method, epochs)
    if (out / "report.json").is_file():
        return json.loads((out / "report.json").read_text())
    common = ["--bundle", str(bundle), "--task", sc.task, "--target", sc.target,
              "--lat", sc.lat, "--mem", sc.mem, "-o", str(out)]
    if method == "nn-factory":
        run(nnfc("compile", *common), log)
    elif method == "retrain":
        tag = f"e{epochs['retrain']}" if epochs["retrain"] else "factory-epochs"
        ckpt = results / "retrain-ckpt" / f"{sc.task.replace(',', '+')}-{tag}"
        extra = ["--epochs", str(epochs["retrain"])] if epochs["retrain"] else []
        run(nnfc("baseline", "retrain", *common, "--checkpoint-dir", str(ckpt),
                 *(["--resume"] if (ckpt / "state.json").is_file() else []), *extra), log)
    else:
        ckpt = out.with_name(out.name + ".ckpt")
        extra = ["--epochs", str(epochs["finetune"])] if epochs["finetune"] else []
        run(nnfc("baseline", "prune-tune", *common, "--checkpoint-dir", str(ckpt),
                 *(["--resume"] if (ckpt / "state.json").is_file() else []), *extra), log)
    return json.loads((out / "report.json").read_text())


def factory_accuracy(bundle: Path, sc: Scenario, out: Path) -> dict[str, Any]:
    """The compiled model's accuracy on the test split, by the baselines' protocol (cached):
    ``nnfc bench --eval``'s scoring of a compile output (a detector's ``model.onnx`` is the
    network joined to its decode graph), on the baselines' samples and seed."""
    path = out / "accuracy.json"
    if path.is_file():
        return json.loads(path.read_text())
    from nnfc.atomic import write_json_atomic
    from nnfc.baselines.task_data import EVAL_SAMPLES, EVAL_SEED
    from nnfc.benchmarking.evaluate import evaluate_artifact
    from nnfc.targets import get_target

    report = json.loads((out / "report.json").read_text())
    report["bundle"] = {**report.get("bundle", {}), "path": str(bundle)}
    acc = evaluate_artifact(report, get_target("desktop"), out / "model.onnx", out,
                            EVAL_SAMPLES, EVAL_SEED)
    write_json_atomic(path, acc)
    return acc


def row_of(sc: Scenario, method: str, report: dict[str, Any], seen: set) -> dict[str, Any]:
    req = report["request"]
    meas = report["measured"]
    lat = meas["latency_ms"]["median"] if meas.get("latency_ms") else None
    mem = meas["memory_mb"]
    if method == "nn-factory":
        seconds = report["timings_s"]["total"]
    else:
        seconds = report["customization"]["seconds"]
    return {"scenario": asdict(sc), "method": method, "task_seen": tuple(
                sorted(sc.task.split(","))) in seen,
            "lat_ms": lat, "mem_mb": mem, "lat_req_ms": req["lat_ms"], "mem_req_mb": req["mem_mb"],
            "d_lat": (lat - req["lat_ms"]) / req["lat_ms"] if lat is not None else None,
            "d_mem": (mem - req["mem_mb"]) / req["mem_mb"],
            "within_budget": report["within_budget"],
            "accuracy": report["accuracy"]["value"], "metric": report["accuracy"]["metric"],
            "activation_ratio": report["activation_ratio"], "params": report["params"],
            "customization_s": seconds,
            "customization_parts_s": report.get("customization", {}).get("parts_s",
                                                                         report["timings_s"])}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:+.0%}".replace("-", "−")


def machine_seconds(rows: list[dict[str, Any]]) -> float:
    """Seconds the results took: customization of every row, Retrain's training once per task
    (its other scenarios only export and measure the same trained model)."""
    total, trained = 0.0, set()
    for r in rows:
        parts = dict(r["customization_parts_s"]) if r["method"] != "nn-factory" else {}
        if r["method"] == "retrain" and r["scenario"]["task"] in trained:
            parts.pop("training", None)
            total += sum(parts.values())
            continue
        trained.add(r["scenario"]["task"]) if r["method"] == "retrain" else None
        total += sum(parts.values()) if parts else r["customization_s"]
    return total


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def _dur(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def markdown(rows: list[dict[str, Any]], notes: list[str], prep: dict[str, float]) -> str:
    """Table 3 (ΔLat, ΔMem, accuracy per method) and Table 4 (preparation / customization)."""
    by_sc: dict[str, dict[str, dict]] = {}
    order = []
    for r in rows:
        key = Scenario(**r["scenario"]).key
        if key not in by_sc:
            order.append(key)
        by_sc.setdefault(key, {})[r["method"]] = r
    metric = rows[0]["metric"] if rows else "accuracy"
    acc_name = "mAP@0.5" if metric == "map50" else "Acc"
    head = ["Task", "Device", "LAT_req", "MEM_req"]
    for m in METHODS:
        head += [f"{LABELS[m]} ΔLat", "ΔMem", acc_name]
    head += ["Customization: NN-Factory / Retrain / Prune&Tune"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in order:
        ms = by_sc[key]
        sc = next(iter(ms.values()))["scenario"]
        seen = next(iter(ms.values()))["task_seen"]
        cells = [f"{{{sc['task']}}}" + ("" if seen else " *"), sc["target"], sc["lat"], sc["mem"]]
        for m in METHODS:
            r = ms.get(m)
            if r is None:
                cells += ["…", "…", "…"]
                continue
            flag = "" if r["within_budget"] is not False else " ✗"
            cells += [_pct(r["d_lat"]) + flag, _pct(r["d_mem"]), f"{r['accuracy']:.1%}"]
        cells.append(" / ".join(_dur(ms[m]["customization_s"]) if m in ms else "…"
                                for m in METHODS))
        lines.append("| " + " | ".join(cells) + " |")
    out = ["## NN-Factory vs Retrain vs Prune&Tune", "", *lines, "",
           "ΔLat / ΔMem: (measured − budget) / budget; ✗ = over budget (Retrain ignores the "
           "budget, as in the paper). * = a task the factory never trained on (unseen).", ""]
    # Table 4: preparation once, customization per scenario
    out += ["| Method | Preparation (once) | Customization per scenario (mean) | "
            "vs NN-Factory | mean " + acc_name + " | within budget |", "|---|---|---|---|---|---|"]
    mean_cust = {}
    for m in METHODS:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        mean_cust[m] = sum(r["customization_s"] for r in rs) / len(rs)
    for m in METHODS:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        ratio = (f"{mean_cust[m] / mean_cust['nn-factory']:,.0f}×"
                 if "nn-factory" in mean_cust and m != "nn-factory" else "1×")
        within = sum(r["within_budget"] is True for r in rs)
        p = prep.get(m)
        out.append(f"| {LABELS[m]} | {_dur(p) if isinstance(p, (int, float)) else '—'} | "
                   f"{_dur(mean_cust[m])} | {ratio} | "
                   f"{sum(r['accuracy'] for r in rs) / len(rs):.1%} | {within}/{len(rs)} |")
    out += ["", *notes]
    return "\n".join(out) + "\n"


def scenario_key(row: dict[str, Any]) -> tuple:
    sc = row["scenario"]
    return (sc["target"], sc["task"], sc.get("lat"), sc.get("mem"))


def scenario_text(row: dict[str, Any]) -> str:
    sc = row["scenario"]
    return (f"{sc['task']} on {sc['target']}, LAT {sc.get('lat') or '-'}, "
            f"MEM {sc.get('mem') or '-'}")


def plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Accuracy vs measured latency, one marker per method, one panel per target; every marker
    carries its scenario's number (S1, S2, ...), the key below names each scenario."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from nnfc.analysis.plotting import clustered_labels
    targets = sorted({r["scenario"]["target"] for r in rows})
    if not targets:
        return None
    numbers: dict[tuple, int] = {}
    for r in sorted(rows, key=scenario_key):
        numbers.setdefault(scenario_key(r), len(numbers) + 1)
    texts = {n: scenario_text(r) for r in rows for k, n in numbers.items()
             if scenario_key(r) == k}
    key_lines = -(-len(numbers) // 2)
    fig, axes = plt.subplots(1, len(targets), figsize=(6.2 * len(targets), 5.0 + 0.22 * key_lines),
                             squeeze=False)
    # Okabe & Ito colours (colour-blind safe) and three marker shapes
    style = {"nn-factory": ("o", "#0072B2"), "retrain": ("s", "#D55E00"),
             "prune-tune": ("^", "#009E73")}
    for ax, target in zip(axes[0], targets):
        panel = [r for r in rows if r["scenario"]["target"] == target and r["lat_ms"] is not None]
        dx = (max(r["lat_ms"] for r in panel) - min(r["lat_ms"] for r in panel)) * 1e3 or 1.0
        dy = (max(r["accuracy"] for r in panel) - min(r["accuracy"] for r in panel)) * 100 or 1.0
        for m in METHODS:
            rs = [r for r in rows if r["method"] == m and r["scenario"]["target"] == target
                  and r["lat_ms"] is not None]
            if rs:
                xs = [r["lat_ms"] * 1e3 for r in rs]
                ys = [r["accuracy"] * 100 for r in rs]
                ax.scatter(xs, ys, marker=style[m][0], color=style[m][1], label=LABELS[m], s=50,
                           alpha=0.85)
                order = sorted(range(len(rs)), key=lambda i: (xs[i], ys[i]))
                for (x, y), label in clustered_labels(
                        [xs[i] for i in order], [ys[i] for i in order],
                        [f"S{numbers[scenario_key(rs[i])]}" for i in order], dx, dy):
                    ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4),
                                fontsize=9, color=style[m][1])
        ax.set_xlabel("measured latency (µs, batch 1)")
        ax.set_ylabel(("mAP@0.5" if rows[0]["metric"] == "map50" else "accuracy")
                      + " on the task (%)")
        ax.set_title(f"{target}: accuracy vs latency per scenario (S#)")
        ax.margins(x=0.12)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, title="method")
    key = [f"S{n}: {texts[n]}" for n in sorted(texts)]
    half = -(-len(key) // 2)
    fig.text(0.01, 0.01, "\n".join(key[:half]), fontsize=9, va="bottom", family="monospace")
    fig.text(0.51, 0.01, "\n".join(key[half:]), fontsize=9, va="bottom", family="monospace")
    fig.tight_layout(rect=(0, (0.22 * key_lines + 0.15) / (5.0 + 0.22 * key_lines), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=sorted(FAMILIES), default="numvqa",
                    help="which scenarios: NumVQA on factories/numvqa-resnet, or AttrOD "
                         "detection on the default factory")
    ap.add_argument("--bundle", default=None, help="the factory (default: the family's)")
    ap.add_argument("--results", default=None,
                    help="cache and table directory (default: the family's)")
    ap.add_argument("--machine", default="a 2-core CPU machine",
                    help="what the results were measured on, for the table's notes")
    ap.add_argument("--targets", default="desktop,android",
                    help="comma-separated targets to include (scenarios on others are skipped)")
    ap.add_argument("--scenarios", type=int, default=None, help="only the first N scenarios")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--retrain-epochs", type=int, default=None,
                    help="override the factory's epochs for Retrain (reduced runs)")
    ap.add_argument("--finetune-epochs", type=int, default=None,
                    help="Prune&Tune fine-tuning epochs (default: nnfc's, 1/8 of the factory's)")
    ap.add_argument("--profile-subnets", type=int, default=300,
                    help="subnets for a missing target profile")
    ap.add_argument("--table-only", action="store_true",
                    help="write the table from cached results; run nothing")
    args = ap.parse_args(argv)

    fam = FAMILIES[args.family]
    bundle = Path(args.bundle or ROOT / fam.bundle).resolve()
    results = Path(args.results or ROOT / fam.results).resolve()
    targets = args.targets.split(",")
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown method(s) {bad}; known: {', '.join(METHODS)}")
    scenarios = [s for s in fam.scenarios if s.target in targets]
    scenarios = scenarios[:args.scenarios] if args.scenarios else scenarios
    epochs = {"retrain": args.retrain_epochs, "finetune": args.finetune_epochs}
    manifest = json.loads((bundle / "manifest.json").read_text())
    seen = {tuple(sorted(t)) for t in manifest["tasks"]["seen"]}
    t_start = time.perf_counter()
    log = tqdm.write
    prep_profiles = 0.0
    rows, failed = [], []
    jobs = [(sc, m) for sc in scenarios for m in methods]
    bar = tqdm(jobs, desc="paper table", unit="run", dynamic_ncols=True)
    for sc, m in bar:
        bar.set_postfix_str(f"{m} {sc.task} {sc.target}", refresh=True)
        out = method_dir(results, sc, m, epochs)
        if args.table_only and not (out / "report.json").is_file():
            continue
        try:
            if not args.table_only:
                prep_profiles += ensure_profile(bundle, sc.target, args.profile_subnets, log)
            report = run_method(bundle, results, sc, m, epochs, log)
        except MethodFailed as exc:
            log(f"paper_table: {LABELS[m]} on {sc.task} / {sc.target}: {exc}")
            failed.append(f"{LABELS[m]} on {{{sc.task}}} {sc.target} {sc.lat} {sc.mem}")
            continue
        if m == "nn-factory":
            report = {**report, "accuracy": factory_accuracy(bundle, sc, out)}
        rows.append(row_of(sc, m, report, seen))
    bar.close()
    factory_train_s = (manifest.get("training", {}).get("metrics", {}).get("history") or
                       [{}])[-1].get("elapsed_s")
    prep: dict[str, float] = {}
    if factory_train_s:
        prep["nn-factory"] = factory_train_s
        prep["prune-tune"] = factory_train_s  # Prune&Tune starts from the same trained supernet
    cfg_epochs = manifest.get("training", {}).get("config", {}).get("train", {}).get("epochs")
    elapsed = time.perf_counter() - t_start
    notes = [
        f"Factory: `{os.path.relpath(bundle, ROOT)}` ({cfg_epochs} epochs). Retrain: "
        + (f"**{_epochs(args.retrain_epochs)} (reduced run)**" if args.retrain_epochs
           else f"{cfg_epochs} epochs (the factory's recipe)")
        + "; Prune&Tune fine-tuning: "
        + (f"**{_epochs(args.finetune_epochs)} (reduced run)**" if args.finetune_epochs
           else "1/8 of the factory's epochs") + ".",
        f"Accuracy: {fam.test_split}, the same samples for every method. Latency: measured "
        "on this machine as `nnfc compile` measures (one thread, drift-cancelled against the "
        "profile's reference subnet); memory: parameters + largest intermediate tensor.",
        "Customization: NN-Factory = `nnfc compile` wall time from process start (search, "
        "prune, lower, measure, verify); baselines = training (Retrain) or pruning + fine-tuning "
        "(Prune&Tune), plus export, lowering and measuring. Preparation: the factory's training "
        "(Prune&Tune starts from the same trained supernet); profiling a target is extra, once "
        "per target.",
        f"Machine time of these results: {_dur(machine_seconds(rows))} (every run's "
        f"customization, each task's Retrain training counted once), on {args.machine}."
        + ("" if args.table_only else f" This invocation: {_dur(elapsed)} wall"
           + (f", of which target profiling {_dur(prep_profiles)}" if prep_profiles else "")
           + "; cached results are not re-run."),
    ]
    if failed:
        notes.append("Failed (the command's error line is in the run's log; e.g. a budget below "
                     "what the method can reach on this machine): " + "; ".join(failed) + ".")
    results.mkdir(parents=True, exist_ok=True)
    from nnfc.atomic import write_json_atomic
    write_json_atomic(results / "results.json", {"rows": rows, "notes": notes})
    (results / "table.md").write_text(markdown(rows, notes, prep), encoding="utf-8")
    png = plot(rows, results / "accuracy_vs_latency.png")
    print((results / "table.md").read_text())
    print(f"wrote {results / 'table.md'}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
