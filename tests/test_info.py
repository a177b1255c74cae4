"""`nnfc info` and `nnfc factory list`: what a factory knows, the factories nnfc finds."""

import json

from cli_runner import run_cli
from compile_fixtures import profiled_bundle


def test_info_json_and_text(capsys):
    code, out, err = run_cli(["info", str(profiled_bundle()), "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert {"attributes", "tasks", "gate_layers", "size", "profiles", "training",
            "fingerprint"} <= set(info)
    prof = info["profiles"][0]
    assert prof["target"] == "desktop" and prof["where"] == "bundle"
    assert prof["full_latency_ms"] > 0 and prof["precision"] == "fp32"
    assert info["size"]["params"] > 0 and info["size"]["bundle_mb"] > 0
    code, out, err = run_cli(["info"], capsys)  # the default factory, as text
    assert code == 0 and "attributes (13)" in out and "unseen" in out and "recipe" in out


def test_factory_list_and_names(capsys, monkeypatch):
    monkeypatch.delenv("NNFC_FACTORY", raising=False)
    code, out, err = run_cli(["factory", "list"], capsys)
    assert code == 0 and "* default" in out and "numvqa-resnet" in out
    code, out, err = run_cli(["info", "numvqa-resnet", "--json"], capsys)  # a name works
    assert code == 0 and json.loads(out)["family"] == "numvqa"
    code, out, err = run_cli(["info", "no-such-factory"], capsys)
    assert code == 2 and err.startswith("nnfc: error:") and err.count("\n") == 1


def test_misspelt_verb_and_usage_errors_are_one_line(capsys):
    code, out, err = run_cli(["compil"], capsys)
    assert code == 2 and err == "nnfc: error: no command 'compil'; did you mean compile? " \
                                "(see nnfc --help)\n"
    code, out, err = run_cli(["compile", "--task", "red,car"], capsys)
    assert code == 2 and err.startswith("nnfc: error: Missing option '-o'")
    assert "(see nnfc compile --help)" in err and err.count("\n") == 1
