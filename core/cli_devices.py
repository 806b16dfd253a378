"""``mlcls devices``: every known device type, the plugin behind it, whether it can run here,
how many devices, versions, and the reason and the fix when it cannot.

Probes that need Paddle's answers ask a child process (see ``mlcls.backends.framework_probe``),
so a vendor runtime that crashes on import is reported here rather than taking this down.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .catalogue import load_catalogue
from .devices import fallback_chain, known_types, probe
from .plugins import get_state


def collect() -> dict[str, Any]:
    """What ``mlcls devices --json`` prints."""
    cat = load_catalogue()
    owners = get_state().device_types
    rows = []
    for name in known_types():
        report = probe(name).as_dict()
        owner = owners.get(name)
        report["plugin"] = owner.plugin if owner else None
        report["aliases"] = list(cat.entry(name).aliases) or list(owner.aliases if owner else ())
        report["fallback"] = list(fallback_chain(name))
        rows.append(report)
    return {"priority": list(cat.priority), "fallback_policy": cat.fallback,
            "catalogue": cat.source, "types": rows}


def _print_table(data: dict[str, Any]) -> None:
    header = ("type", "plugin", "available", "count", "versions")
    rows = [(r["type"], r["plugin"] or "-", "yes" if r["available"] else "no",
             str(r["count"]) if r["available"] else "-",
             ", ".join(f"{k} {v}" for k, v in r["versions"].items()) or "-")
            for r in data["types"]]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for r in data["types"]:
        lines = []
        for d in r["details"]:
            if "name" in d:
                mem = f", {d['memory_mib']} MiB" if d.get("memory_mib") else ""
                drv = f", driver {d['driver']}" if d.get("driver") else ""
                lines.append(f"  found: GPU {d.get('index')} {d['name']}{mem}{drv}")
        if not r["available"]:
            lines.append(f"  unavailable: {r['reason']}")
            if r["fix"]:
                lines.append(f"  fix: {r['fix']}")
        lines += [f"  note: {n}" for n in r["notes"]]
        if lines:
            print(f"\n{r['type']}:")
            print("\n".join(lines))
    print(f"\nauto tries: {' -> '.join(data['priority'])}; explicit devices are "
          f"{'allowed to fall back' if data['fallback_policy'] else 'strict'} "
          f"(devices.yaml: {data['catalogue']})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mlcls devices",
        description="List the device types mlcls knows and whether each can run here.")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_table(data)
    return 0
