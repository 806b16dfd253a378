"""The NVIDIA GPU backend: the hardware only. ``nvidia-smi`` (or the driver's
``/proc/driver/nvidia/gpus``) lists the GPUs, ``CUDA_VISIBLE_DEVICES`` is applied the way CUDA
applies it, and ids are counted after it. Whether an engine can use them (a CUDA build of
paddlepaddle...) is each engine's own probe."""

from __future__ import annotations

import glob
import os
import shutil

from mlcls.plugin import DeviceBackend, ProbeReport, hookimpl

from . import hardware, nvidia

TYPE = "gpu"
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
PROC_GPUS = "/proc/driver/nvidia/gpus/*"


def probe() -> ProbeReport:
    installed = nvidia.list_gpus()  # the hardware, whatever the mask says
    mask = os.environ.get(VISIBLE_ENV)
    versions = {"driver": installed[0].driver} if installed else {}
    if installed:
        gpus = nvidia.apply_visible_mask(installed, mask)
        details = [dict(g.as_dict(), id=i) for i, g in enumerate(gpus)]
        count = len(gpus)
    else:
        # no nvidia-smi (some containers): the driver's own listing, by PCI address
        bus = sorted(os.path.basename(p) for p in glob.glob(PROC_GPUS))
        if not bus:
            where = ("nvidia-smi is not on PATH" if shutil.which("nvidia-smi") is None
                     else "nvidia-smi lists none")
            return ProbeReport(TYPE, False, reason=f"no NVIDIA GPU found ({where})",
                               fix="on a machine with an NVIDIA GPU, install its driver "
                                   "(nvidia-smi must list the GPU)")
        shown = hardware.apply_index_mask(list(range(len(bus))), mask)
        details = [{"id": i, "index": p, "pci": bus[p]} for i, p in enumerate(shown)]
        count = len(shown)
    if count == 0:
        total = len(installed) or len(details)
        return ProbeReport(TYPE, False, versions=versions, details=[
            g.as_dict() for g in installed], reason=(
            f"{VISIBLE_ENV}={mask!r} leaves no gpu device visible"
            + (f" ({total} installed)" if total else "")),
            fix=f"unset {VISIBLE_ENV} or set it to the device numbers to use "
                f"(e.g. {VISIBLE_ENV}=0,1)")
    return ProbeReport(TYPE, True, count=count, versions=versions, details=details)


class GpuBackend(DeviceBackend):
    name = TYPE
    description = "NVIDIA GPU (CUDA)"
    aliases = ("cuda", "nvidia")
    fallback = ("cpu",)
    visible_env = VISIBLE_ENV

    def probe(self) -> ProbeReport:
        return probe()

    def framework_device(self, device_id: int | None) -> str:
        return f"{TYPE}:{device_id or 0}"


@hookimpl
def register_device_backends(register):
    register(GpuBackend())
