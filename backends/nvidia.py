"""The NVIDIA GPUs on this machine, from ``nvidia-smi``, whatever Paddle build is installed.

The gpu probe uses this to name the GPUs (and the driver) when Paddle cannot use them, e.g. on
a CPU build. ``nvidia-smi`` ignores ``CUDA_VISIBLE_DEVICES``, so the mask is applied here, the
way CUDA applies it: a comma-separated list of indices or UUID prefixes, read up to the first
entry that matches nothing; the empty string hides every GPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass

QUERY_FIELDS = "index,name,uuid,memory.total,driver_version"
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Gpu:
    index: int  # physical index, as nvidia-smi numbers it
    name: str
    uuid: str
    memory_mib: int | None
    driver: str

    def describe(self) -> str:
        mem = f", {self.memory_mib} MiB" if self.memory_mib is not None else ""
        return f"GPU {self.index} {self.name}{mem}"

    def as_dict(self) -> dict:
        return asdict(self)


def _mib(text: str) -> int | None:
    match = re.match(r"\s*(\d+)", text)
    return int(match.group(1)) if match else None


def parse_query_csv(text: str) -> list[Gpu]:
    """Parse ``nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version
    --format=csv`` (with or without the header and units); other columns may follow."""
    gpus = []
    header: list[str] | None = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if not line.strip():
            continue
        if cells[0].lower() == "index":
            header = [c.split(" [")[0].lower() for c in cells]
            continue
        cols = header or QUERY_FIELDS.split(",")
        row = dict(zip(cols, cells))
        if not row.get("index", "").isdigit():
            continue
        gpus.append(Gpu(index=int(row["index"]), name=row.get("name", "?"),
                        uuid=row.get("uuid", ""), memory_mib=_mib(row.get("memory.total", "")),
                        driver=row.get("driver_version", "")))
    return gpus


def parse_cuda_version(smi_text: str) -> str | None:
    """The newest CUDA version the driver supports, from plain ``nvidia-smi``'s banner."""
    match = re.search(r"CUDA Version:\s*([\d.]+)", smi_text)
    return match.group(1) if match else None


def apply_visible_mask(gpus: list[Gpu], mask: str | None) -> list[Gpu]:
    """The GPUs CUDA would show for ``CUDA_VISIBLE_DEVICES=mask``, in logical-id order."""
    if mask is None:
        return list(gpus)
    visible: list[Gpu] = []
    for entry in (e.strip() for e in mask.split(",")):
        if entry.isdigit():
            match = [g for g in gpus if g.index == int(entry)]
        else:
            match = [g for g in gpus if entry and g.uuid.startswith(entry)]
        if len(match) != 1 or match[0] in visible:
            break  # CUDA stops reading the list at the first entry it cannot use
        visible.append(match[0])
    return visible


def _run(args: list[str]) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def list_gpus() -> list[Gpu]:
    """Every NVIDIA GPU the driver reports (no mask applied); empty without a driver."""
    out = _run([f"--query-gpu={QUERY_FIELDS}", "--format=csv"])
    return parse_query_csv(out) if out else []


def driver_cuda_version() -> str | None:
    out = _run([])
    return parse_cuda_version(out) if out else None
