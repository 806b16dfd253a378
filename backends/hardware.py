"""What the accelerator backends share: counting a vendor's devices without its SDK.

A vendor driver creates one device node per card (``/dev/davinci0``, ``/dev/cambricon_dev0``...);
counting them needs no SDK, framework or child process. The vendor's visible-device mask is
applied the way the vendor runtimes apply it: a comma-separated list of physical indices, read
up to the first entry that names no device; the empty string hides every device.
"""

from __future__ import annotations

import glob
import os
import re

from mlcls.plugin import ProbeReport


def node_indices(pattern: str) -> list[int]:
    """The physical indices of the device nodes matching ``pattern`` (``/dev/davinci*``): the
    trailing number of each node name, sorted."""
    found = set()
    for path in glob.glob(pattern):
        match = re.search(r"(\d+)$", os.path.basename(path))
        if match:
            found.add(int(match.group(1)))
    return sorted(found)


def apply_index_mask(indices: list[int], mask: str | None) -> list[int]:
    """The devices the runtime shows for ``mask``, in logical-id order."""
    if mask is None:
        return list(indices)
    visible: list[int] = []
    for entry in (e.strip() for e in mask.split(",")):
        if not entry.isdigit() or int(entry) not in indices or int(entry) in visible:
            break
        visible.append(int(entry))
    return visible


def node_probe(device_type: str, vendor: str, pattern: str, visible_env: str | None,
               smi: str) -> ProbeReport:
    """The report of a backend whose hardware is its device nodes."""
    present = node_indices(pattern)
    if not present:
        return ProbeReport(device_type, False,
                           reason=f"no {vendor} device found (no {pattern} device node)",
                           fix=f"on a machine with the card, install the {vendor} driver "
                               f"({smi} must list the card; in a container, pass the device "
                               f"nodes through)")
    mask = os.environ.get(visible_env) if visible_env else None
    visible = apply_index_mask(present, mask)
    if not visible:
        return ProbeReport(device_type, False,
                           reason=f"{visible_env}={mask!r} leaves none of the {len(present)} "
                                  f"{vendor} device(s) visible",
                           fix=f"unset {visible_env} or set it to the device numbers to use "
                               f"(e.g. {visible_env}={present[0]})")
    return ProbeReport(device_type, True, count=len(visible),
                       details=[{"id": i, "index": p} for i, p in enumerate(visible)])
