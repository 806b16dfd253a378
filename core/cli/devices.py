"""``mlcls devices``: every known device type, the plugin behind it, whether its hardware is
here (count, versions; the reason and the fix when not), and for each available type which
engines can run on it here, and why the others cannot.

Probes that need Paddle's answers ask a child process (see ``mlcls.backends.framework_probe``),
so a vendor runtime that crashes on import is reported here rather than taking this down; a
plugin's probe that hangs is cut off (devices.yaml ``probe_timeout_s``). Neither Paddle nor
OpenCV is imported here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .. import plugins
from ..catalogue import load_catalogue
from ..devices import (
    aliases,
    engine_preference,
    fallback_chain,
    known_engines,
    known_types,
    probe,
    probe_engine,
)
from .arguments import ArgumentParser, new_parser
from .table import print_table


def collect() -> dict[str, Any]:
    """What ``mlcls devices --json`` prints."""
    cat = load_catalogue()
    state = plugins.get_state()
    rows = []
    alias_map = aliases()
    for name in known_types():
        report = probe(name).as_dict()
        report["plugin"] = state.backend_plugin.get(name)
        report["aliases"] = [a for a, t in alias_map.items() if t == name]
        report["fallback"] = list(fallback_chain(name))
        preferred = engine_preference(name)
        report["engine_order"] = preferred
        engines = []
        if report["available"]:
            for engine in preferred + [e for e in known_engines() if e not in preferred]:
                er = probe_engine(engine, name)
                engines.append({"engine": engine, "plugin": state.engine_plugin.get(engine),
                                "available": er.available, "versions": er.versions,
                                "reason": er.reason, "fix": er.fix, "notes": er.notes})
        report["engines"] = engines
        rows.append(report)
    faults = [{"plugin": r.name, "status": r.status, "error": r.error, "faults": r.faults}
              for r in state.records if r.error or r.faults]
    from ..tuning import all_records, record_path

    return {"priority": list(cat.priority), "fallback_policy": cat.fallback,
            "catalogue": cat.source, "types": rows, "plugin_faults": faults,
            "tuned": all_records(), "tuning_record": str(record_path())}


def _print_table(data: dict[str, Any]) -> None:
    print_table(("type", "plugin", "available", "count", "engines", "versions"), [
        (r["type"], r["plugin"] or "-", "yes" if r["available"] else "no",
         str(r["count"]) if r["available"] else "-",
         ",".join(e["engine"] for e in r["engines"] if e["available"]) or "-",
         ", ".join(f"{k} {v}" for k, v in r["versions"].items()) or "-")
        for r in data["types"]])
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
        for e in r["engines"]:
            versions = ", ".join(f"{k} {v}" for k, v in e["versions"].items())
            if e["available"]:
                lines.append(f"  engine {e['engine']}: yes" + (f" ({versions})" if versions
                                                                 else ""))
            else:
                lines.append(f"  engine {e['engine']}: no, {e['reason']}"
                             + (f" (fix: {e['fix']})" if e["fix"] else ""))
            lines += [f"    note: {n}" for n in e["notes"]]
        if lines:
            print(f"\n{r['type']}:")
            print("\n".join(lines))
    for f in data["plugin_faults"]:
        print(f"\nplugin {f['plugin']} ({f['status']}):")
        if f["error"]:
            print(f"  failed to load: {f['error']}")
        for text in f["faults"]:
            print(f"  fault: {text}")
    if data.get("tuned"):
        # engines `--engine auto` takes ahead of devices.yaml's order (core/tuning.py)
        print(f"\nengines chosen by `mlcls tune` ({data['tuning_record']}):")
        for r in data["tuned"]:
            print(f"  {r.get('model_dir')} on {r.get('device_type')} at batch "
                  f"{r.get('batch_size')}: {r['engine']} (measured {r.get('measured_at')})")
    print(f"\nauto tries: {' -> '.join(data['priority'])}; explicit devices are "
          f"{'allowed to fall back' if data['fallback_policy'] else 'strict'} "
          f"(devices.yaml: {data['catalogue']})")


def build_parser() -> ArgumentParser:
    p = new_parser("mlcls devices", "List the device types mlcls knows, whether each can run "
                   "here, and which engines can run on it.")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    # the faults are printed below; the log's copy of each would only repeat them
    logging.getLogger("mlcls.plugins").setLevel(logging.ERROR)
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_table(data)
    return 0
