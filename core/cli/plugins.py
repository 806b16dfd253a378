"""``mlcls plugins``: every plugin found, its distribution, hooks, the device types and engines
it registered, and its errors and faults (refused registrations, calls that raised or hung).

Unless ``--no-check`` is given, every backend and engine is called once as a run would call it
(the probes, the environment; see ``devices.check_plugins``), so that a plugin that raises or
hangs there is named here. Neither Paddle nor OpenCV is imported."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

from ..plugins import get_state
from .arguments import ArgumentParser, new_parser
from .table import print_table


def build_parser() -> ArgumentParser:
    p = new_parser("mlcls plugins", "List the installed mlcls plugins.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-check", action="store_true",
                   help="only list what loaded; do not call the probes")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    # the faults are printed below; the log's copy of each would only repeat them
    logging.getLogger("mlcls.plugins").setLevel(logging.ERROR)
    state = get_state()
    if not args.no_check:
        from ..devices import check_plugins

        check_plugins()
    records = state.records
    if args.json:
        print(json.dumps([asdict(r) for r in records], indent=2))
        return 0
    print_table(("name", "status", "distribution", "device types", "engines", "hooks"), [
        (r.name, r.status + (f" ({len(r.faults)} fault(s))" if r.faults else ""),
         f"{r.distribution} {r.version}".strip(), ",".join(r.device_types) or "-",
         ",".join(r.engines) or "-", ",".join(r.hooks) or "-") for r in records])
    for r in records:
        if r.error:
            print(f"\n{r.name}: failed to load: {r.error}")
        for text in r.faults:
            print(f"\n{r.name}: fault: {text}")
    return 0
