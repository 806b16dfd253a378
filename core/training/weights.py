"""``--pretrained``: start a network from the weights users already have.

Two sources, told apart by what the path holds:

* a **training checkpoint** (``.pdparams``: a PaddleClas / PaddleX ``best_model.pdparams`` or
  an ImageNet backbone file, or an ``mlcls train`` checkpoint): tensors are keyed by their
  place in the layer tree (``blocks2.0.dw_conv.conv.weight``), which :mod:`.models` copies
  from PaddleClas, so they match by name;
* an **inference model directory** (``inference.pdiparams`` + ``inference.json`` or
  ``.pdmodel``, the official downloads and every export): the graph keeps only the names
  Paddle generated when the network was built (``conv2d_0.w_0``, ``batch_norm2d_3.w_1``...).
  :func:`mlcls.training.models.build_model` builds in the same order under a fresh name
  scope, so the same names come out; when an exporter had built other layers first, the
  numbering is shifted per layer kind, so each kind is lined up by its order.

Either way a tensor is loaded only when its shape matches too; the head of a model trained
on another number of classes is skipped, and a file of another architecture is refused.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..errors import UsageError

_GENERATED = re.compile(r"^(?P<kind>.+)_(?P<index>\d+)\.(?P<slot>[a-z]+_\d+)$")
_LOADER_SUFFIX = re.compile(r"^(.+\.[a-z]+_\d+)_\d+$")  # jit.load appends "_0"
HEAD_PREFIX = "fc."


@dataclass
class LoadReport:
    source: str
    kind: str  # "checkpoint" | "inference model"
    total: int  # tensors in the network
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # name, there, here
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"pretrained {self.kind} {self.source}: loaded {len(self.loaded)} of "
                 f"{self.total} tensors"]
        if self.skipped:
            heads = sum(1 for name, _, _ in self.skipped if name.startswith(HEAD_PREFIX))
            what = " (the head: another class count)" if heads == len(self.skipped) else ""
            parts.append(f"skipped {len(self.skipped)} of another shape{what}")
        if self.missing:
            parts.append(f"missing {len(self.missing)} (left as initialised: "
                         f"{_listing(self.missing)})")
        if self.unused:
            parts.append(f"{len(self.unused)} in the file not used ({_listing(self.unused)})")
        return "; ".join(parts)


def _listing(names: list[str], limit: int = 3) -> str:
    more = f", ... {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# -- reading ---------------------------------------------------------------------------------

def _inference_prefix(path: Path) -> Path | None:
    if path.is_dir() and (path / "inference.pdiparams").is_file():
        return path / "inference"
    if path.suffix == ".pdiparams" and path.is_file():
        return path.with_suffix("")
    return None


def _checkpoint_file(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".pdparams":
        return path
    if path.is_dir():
        if (path / "model.pdparams").is_file():
            return path / "model.pdparams"
        found = sorted(p for p in path.glob("*.pdparams") if not p.name.endswith(".ema.pdparams"))
        if len(found) == 1:
            return found[0]
    return None


def read_inference_weights(prefix: Path) -> dict[str, np.ndarray]:
    """Generated name -> array, from ``PREFIX.pdiparams`` and its graph."""
    import paddle

    graph = [prefix.with_suffix(s) for s in (".json", ".pdmodel")]
    if not any(p.is_file() for p in graph):
        raise UsageError(f"{prefix.parent}: inference.pdiparams without inference.json or "
                         "inference.pdmodel beside it; the parameter names are in the graph")
    try:
        layer = paddle.jit.load(str(prefix))
    except Exception as exc:  # noqa: BLE001 - Paddle raises many kinds on a bad model
        raise UsageError(f"{prefix.parent}: cannot read the inference model: {exc}") from exc
    out = {}
    for param in layer.state_dict().values():
        m = _LOADER_SUFFIX.match(param.name)
        out[m.group(1) if m else param.name] = param.numpy()
    return out


def read_checkpoint(file: Path) -> dict[str, np.ndarray]:
    import paddle

    try:
        state = paddle.load(str(file))
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{file}: cannot read it as a Paddle checkpoint: {exc}") from exc
    if not isinstance(state, dict) or not state:
        raise UsageError(f"{file}: not a Paddle state dict (.pdparams of a model)")
    out = {}
    for key, value in state.items():
        if hasattr(value, "shape"):
            out[str(key)] = np.asarray(value)
    return out


# -- matching --------------------------------------------------------------------------------

def _strip_wrapper(state: dict[str, np.ndarray], own: set[str]) -> dict[str, np.ndarray]:
    """A checkpoint of a wrapped model (``backbone.``, ``model.``, a distillation
    ``Student.``) carries one more leading component than the bare network."""
    if any(k in own for k in state):
        return state
    heads = {k.split(".", 1)[0] for k in state if "." in k}
    if len(heads) == 1:
        head = heads.pop() + "."
        return {k[len(head):]: v for k, v in state.items() if k.startswith(head)}
    return state


def _align_generated(theirs: dict[str, np.ndarray], ours: dict[str, str]
                     ) -> dict[str, str]:
    """Their generated name -> our structured key. Names that agree map directly; when a
    kind's numbering is shifted (the exporter built other layers of that kind first), the
    kind's layers are paired in creation order, provided both sides have as many."""
    by_generated = {gen: key for key, gen in ours.items()}
    mapping = {name: by_generated[name] for name in theirs if name in by_generated}
    if len(mapping) == len(theirs):
        return mapping

    def groups(names):
        out: dict[str, dict[int, list[str]]] = {}
        for name in names:
            m = _GENERATED.match(name)
            if m:
                out.setdefault(m["kind"], {}).setdefault(int(m["index"]), []).append(name)
        return out

    mine, other = groups(by_generated), groups(theirs)
    mapping = {}
    for kind, layers in other.items():
        own_layers = mine.get(kind, {})
        if len(own_layers) != len(layers):
            for name in (n for names in layers.values() for n in names):
                if name in by_generated:
                    mapping[name] = by_generated[name]
            continue
        for idx_t, idx_o in zip(sorted(layers), sorted(own_layers)):
            for name in layers[idx_t]:
                slot = _GENERATED.match(name)["slot"]
                own = f"{kind}_{idx_o}.{slot}"
                if own in by_generated:
                    mapping[name] = by_generated[own]
    return mapping


def _declared_model(prefix: Path) -> str | None:
    yml = prefix.parent / "inference.yml"
    try:
        cfg = yaml.safe_load(yml.read_text(encoding="utf-8"))
        return str(cfg["Global"]["model_name"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def carries_ml_decoder(path: str | Path) -> bool:
    """Whether the weights at ``path`` include an ML-Decoder head (its class queries: the one
    embedding table of these networks, ``query_pos_embed`` in a checkpoint, ``embedding_N``
    in an inference model). False for what cannot be read: :func:`load_pretrained` then
    says why."""
    source = Path(path).expanduser()
    try:
        prefix = _inference_prefix(source)
        if prefix is not None:
            return any(name.startswith("embedding_") for name in read_inference_weights(prefix))
        file = _checkpoint_file(source)
        return file is not None and any("query_pos_embed" in key
                                        for key in read_checkpoint(file))
    except UsageError:
        return False


def load_pretrained(net, path: str | Path, model_name: str) -> LoadReport:
    """Copy the matching tensors of ``path`` into ``net``; refuse another architecture."""
    source = Path(path).expanduser()
    if not source.exists():
        raise UsageError(f"--pretrained {path}: no such file or directory")
    own_state = net.state_dict()
    prefix = _inference_prefix(source)
    if prefix is not None:
        declared = _declared_model(prefix)
        if declared and declared != model_name and declared.endswith("_ML"):
            raise UsageError(f"--pretrained {path}: its inference.yml names {declared}, not "
                             f"{model_name}; pass --model {declared} or weights of "
                             f"{model_name}")
        theirs = read_inference_weights(prefix)
        mapping = _align_generated(theirs, {k: v.name for k, v in own_state.items()})
        state = {mapping[name]: value for name, value in theirs.items() if name in mapping}
        unused = sorted(name for name in theirs if name not in mapping)
        report = LoadReport(str(path), "inference model", len(own_state), unused=unused)
    else:
        file = _checkpoint_file(source)
        if file is None:
            raise UsageError(f"--pretrained {path}: expected a .pdparams file, a folder with "
                             "one (a checkpoint such as OUTPUT/epoch_3 or PaddleX's "
                             "output/best_model), or an inference model folder "
                             "(inference.pdiparams)")
        state = _strip_wrapper(read_checkpoint(file), set(own_state))
        report = LoadReport(str(file), "checkpoint", len(own_state),
                            unused=sorted(k for k in state if k not in own_state))
        state = {k: v for k, v in state.items() if k in own_state}

    picked = {}
    for key, tensor in own_state.items():
        if key not in state:
            report.missing.append(key)
        elif tuple(state[key].shape) != tuple(tensor.shape):
            report.skipped.append((key, tuple(state[key].shape), tuple(tensor.shape)))
        else:
            picked[key] = state[key]
            report.loaded.append(key)
    _refuse_another_architecture(report, own_state, model_name)
    with warnings.catch_warnings():  # Paddle warns per tensor left out; the report says it
        warnings.simplefilter("ignore")
        net.set_state_dict(picked)
    return report


def _refuse_another_architecture(report: LoadReport, own_state, model_name: str) -> None:
    body = [k for k in own_state if not k.startswith(HEAD_PREFIX)]
    loaded = sum(1 for k in report.loaded if not k.startswith(HEAD_PREFIX))
    if loaded * 2 >= len(body):
        return
    reason = ""
    body_skipped = [s for s in report.skipped if not s[0].startswith(HEAD_PREFIX)]
    if body_skipped:
        name, there, here = body_skipped[0]
        reason = (f"; {len(body_skipped)} have the right name but another shape, e.g. "
                  f"{name} is {list(there)} there and {list(here)} in {model_name}")
    elif report.unused:
        reason = f"; its tensors are named like {_listing(report.unused)}"
    raise UsageError(f"--pretrained {report.source}: not weights of {model_name}: only "
                     f"{loaded} of its {len(body)} backbone tensors match by name and "
                     f"shape{reason}. Pass weights of the same architecture (PaddleClas' "
                     f"{_arch_hint(model_name)} or a {model_name} model)")


def _arch_hint(model_name: str) -> str:
    from .zoo import model_info

    return model_info(model_name).arch
