"""``mlcls plugins``: every plugin found, its distribution, hooks, the device types and engines
it registered, and its errors and faults (refused registrations, calls that raised or hung).

Unless ``--no-check`` is given, every backend and engine is called once as a run would call it
(the probes, the environment; see ``devices.check_plugins``), so that a plugin that raises or
hangs there is named here. Neither Paddle nor OpenCV is imported."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict

from .plugins import get_state


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mlcls plugins",
                                     description="List the installed mlcls plugins.")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-check", action="store_true",
                        help="only list what loaded; do not call the probes")
    args = parser.parse_args(argv)
    # the faults are printed below; the log's copy of each would only repeat them
    logging.getLogger("mlcls.plugins").setLevel(logging.ERROR)
    state = get_state()
    if not args.no_check:
        from .devices import check_plugins

        check_plugins()
    records = state.records
    if args.json:
        print(json.dumps([asdict(r) for r in records], indent=2))
        return 0
    header = ("name", "status", "distribution", "device types", "engines", "hooks")
    rows = [(r.name, r.status + (f" ({len(r.faults)} fault(s))" if r.faults else ""),
             f"{r.distribution} {r.version}".strip(), ",".join(r.device_types) or "-",
             ",".join(r.engines) or "-", ",".join(r.hooks) or "-") for r in records]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    for r in records:
        if r.error:
            print(f"\n{r.name}: failed to load: {r.error}")
        for text in r.faults:
            print(f"\n{r.name}: fault: {text}")
    return 0
