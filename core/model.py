"""Model directories in PaddleX's inference format, and model names.

A model directory holds ``inference.json`` (PIR) or ``inference.pdmodel`` (legacy program),
``inference.pdiparams`` and ``inference.yml``. Preprocessing, threshold and labels come from
``inference.yml``, so fine-tuned models work without extra configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import load_yaml_file
from .errors import ModelError

GRAPH_FILES = ("inference.json", "inference.pdmodel")
ONNX_FILE = "inference.onnx"
PARAMS_FILE = "inference.pdiparams"
CONFIG_FILE = "inference.yml"
MAX_INPUT_SIDE = 8192  # the largest network input side a preprocessing op may ask for
MAX_LABELS = 100_000


@dataclass
class ModelSpec:
    """Everything needed to build a pipeline for one model directory."""

    model_dir: Path
    graph_file: Path | None  # None in a directory that holds only inference.onnx
    params_file: Path | None
    model_name: str
    transform_ops: list[dict[str, Any]]
    threshold: Any  # float | dict | list, as inference.yml gives it
    label_list: list[str] | None
    raw_config: dict[str, Any] = field(default_factory=dict, repr=False)
    # ``inference.onnx`` beside the Paddle files (PaddleX's high-performance layout), read by
    # the ONNX engines as it is; None when absent (they convert the Paddle files instead)
    onnx_file: Path | None = None


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ModelError(f"{path}: missing {what}")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: {what} is empty")
    return path


def _parse_postprocess(cfg: dict[str, Any], path: Path) -> tuple[Any, list[str] | None]:
    post = cfg.get("PostProcess") or {}
    if not isinstance(post, dict):
        raise ModelError(f"{path}: PostProcess must be a mapping")
    out = post.get("MultiLabelThreshOutput")
    if out is None:
        names = ", ".join(post) or "nothing"
        raise ModelError(f"{path}: PostProcess has {names}, not MultiLabelThreshOutput; "
                         "this is not a multi-label classification model")
    out = out or {}
    labels = out.get("label_list")
    if labels is not None:
        where = f"{path}: PostProcess.MultiLabelThreshOutput.label_list"
        if not isinstance(labels, list):
            raise ModelError(f"{where} must be a list of names")
        bad = next((i for i, name in enumerate(labels)
                    if isinstance(name, (dict, list)) or name is None), None)
        if bad is not None:
            raise ModelError(f"{where}: entry {bad} is a {type(labels[bad]).__name__}, not a "
                             "name")
        if len(labels) > MAX_LABELS:
            raise ModelError(f"{where}: {len(labels)} names, more than {MAX_LABELS}")
        labels = [str(name) for name in labels]
    return out.get("threshold", 0.5), labels


def _check_size(value: Any, where: str) -> None:
    """A size in the preprocessing: a whole number of pixels, or [width, height] of them,
    within ``MAX_INPUT_SIDE`` (larger would make every image an allocation failure)."""
    parts = value if isinstance(value, list) and len(value) == 2 else [value]
    if isinstance(value, list) and len(value) != 2:
        raise ModelError(f"{where}: expected a number or [width, height], got {len(value)} "
                         "values")
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, int):
            raise ModelError(f"{where}: expected whole numbers of pixels, got {part!r:.60}")
        if not 1 <= part <= MAX_INPUT_SIDE:
            raise ModelError(f"{where}: {part} is outside 1..{MAX_INPUT_SIDE} pixels")


def validate_transform_ops(ops: list[Any], path: Path) -> None:
    """Check the preprocessing of ``inference.yml`` when the model is loaded, so that a bad
    value fails the model once instead of every image."""
    for i, entry in enumerate(ops):
        where = f"{path}: PreProcess.transform_ops[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ModelError(f"{where}: expected one operator name with its settings, got "
                             f"{entry!r:.80}")
        (name, args), = entry.items()
        if args is not None and not isinstance(args, dict):
            raise ModelError(f"{where} ({name}): settings must be a mapping")
        args = args or {}
        for key in ("size", "resize_short", "crop_size"):
            if args.get(key) is not None:
                _check_size(args[key], f"{where} ({name}.{key})")
        if name == "NormalizeImage":
            for key in ("mean", "std"):
                value = args.get(key)
                if value is not None and not (
                        isinstance(value, list) and len(value) == 3 and all(
                            isinstance(v, (int, float)) and not isinstance(v, bool)
                            for v in value)):
                    raise ModelError(f"{where} (NormalizeImage.{key}): expected 3 numbers, "
                                     f"got {value!r:.80}")
    from .preprocess import NumpyPreprocessor

    try:
        NumpyPreprocessor(ops)  # the core's reading of every op, at load rather than later
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ModelError(f"{path}: PreProcess.transform_ops: {exc}") from None


def load_model_dir(model_dir: str | Path) -> ModelSpec:
    """Read a model directory; every missing or corrupt file is named in the error."""
    root = Path(model_dir).expanduser()
    if not root.exists():
        raise ModelError(f"{root}: model directory does not exist")
    if not root.is_dir():
        raise ModelError(f"{root}: not a directory (pass the folder that holds "
                         f"{CONFIG_FILE}, {PARAMS_FILE} and {GRAPH_FILES[0]})")
    graph = next((root / g for g in GRAPH_FILES if (root / g).is_file()), None)
    onnx = root / ONNX_FILE
    onnx_file = onnx if onnx.is_file() and onnx.stat().st_size > 0 else None
    params = None
    if graph is None and onnx_file is None:
        raise ModelError(f"{root}: missing the network graph ({' or '.join(GRAPH_FILES)}, "
                         f"or {ONNX_FILE} for the ONNX engines)")
    if graph is not None:  # else an ONNX-only export (`mlcls export --format onnx`)
        _need(graph, "network graph")
        params = _need(root / PARAMS_FILE, "weights file")
    cfg_path = _need(root / CONFIG_FILE, "model configuration")
    cfg = load_yaml_file(cfg_path, ModelError, "model configuration")
    if not isinstance(cfg, dict):
        raise ModelError(f"{cfg_path}: corrupt model configuration (expected a mapping)")
    pre = cfg.get("PreProcess") or {}
    ops = pre.get("transform_ops") if isinstance(pre, dict) else None
    if not isinstance(ops, list) or not ops:
        raise ModelError(f"{cfg_path}: PreProcess.transform_ops is missing or empty")
    validate_transform_ops(ops, cfg_path)
    threshold, labels = _parse_postprocess(cfg, cfg_path)
    glob = cfg.get("Global") or {}
    if not isinstance(glob, dict):
        raise ModelError(f"{cfg_path}: Global must be a mapping")
    name = glob.get("model_name") or root.name
    if not isinstance(name, (str, int, float)) or isinstance(name, bool):
        raise ModelError(f"{cfg_path}: Global.model_name must be a name, got a "
                         f"{type(name).__name__}")
    name = str(name)
    return ModelSpec(root, graph, params, name, ops, threshold, labels, cfg, onnx_file)
