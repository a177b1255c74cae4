"""``nnfc factory list``: the factories nnfc can find."""

from __future__ import annotations

import click


@click.group("factory")
def factory():
    """Factories nnfc can find (installed, the checkout's, $NNFC_FACTORY)."""


@factory.command("list", epilog="""\b
Examples:
  nnfc factory list
  nnfc compile --bundle attrod-mobilenet --task red,car --lat 5ms -o out/m""")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_(as_json):
    """Name, family, attributes and path of each factory; `--bundle NAME` takes the name."""
    import json
    import os

    from nnfc.bundle import read_bundle
    from nnfc.errors import NnfcError
    from nnfc.factories import ENV, default_factory, known_factories

    rows = []
    entries = list(known_factories().items())
    if os.environ.get(ENV):
        entries.insert(0, (f"${ENV}", default_factory()))
    default = default_factory().resolve()
    for name, path in entries:
        try:
            b = read_bundle(path, verify_hashes=False)
            family = (b.manifest.get("task_family") or {}).get("family", "?")
            rows.append({"name": name, "path": str(path), "family": family,
                         "attributes": len(b.attributes), "gate_layers": len(b.gate_layers),
                         "default": path.resolve() == default})
        except NnfcError as exc:
            rows.append({"name": name, "path": str(path), "error": str(exc)})
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        mark = "*" if r.get("default") else " "
        what = (f"{r['family']}, {r['attributes']} attributes, {r['gate_layers']} gate layers"
                if "error" not in r else f"unreadable: {r['error']}")
        click.echo(f"{mark} {r['name']:18s} {what}  {r['path']}")
    click.echo("(* the default: --bundle may be omitted)")
