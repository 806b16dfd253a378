"""mlcls beyond one machine, on Ray (the ``ray`` extra: ``pip install 'mlcls[ray]'``).

- ``mlcls.distributed.batch``: tagging a whole collection on Ray Data (``mlcls batch``,
  ``tag_dataset``, ``run_batch``);
- ``mlcls.distributed.serve``: the HTTP service of ``mlcls --serve`` as a Ray Serve deployment
  (``mlcls serve-ray``, or ``serve run mlcls.distributed.serve:build_app``).

Ray is imported only when one of these runs, so ``import mlcls`` never needs it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BatchSettings", "read_inputs", "run_batch", "tag_dataset"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import batch

        return getattr(batch, name)
    raise AttributeError(f"module 'mlcls.distributed' has no attribute {name!r}")
