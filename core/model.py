"""Model directories in PaddleX's inference format, and model names.

A model directory holds ``inference.json`` (PIR) or ``inference.pdmodel`` (legacy program),
``inference.pdiparams`` and ``inference.yml``. Preprocessing, threshold and labels come from
``inference.yml``, so fine-tuned models work without extra configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ModelError

GRAPH_FILES = ("inference.json", "inference.pdmodel")
PARAMS_FILE = "inference.pdiparams"
CONFIG_FILE = "inference.yml"


@dataclass
class ModelSpec:
    """Everything needed to build a pipeline for one model directory."""

    model_dir: Path
    graph_file: Path
    params_file: Path
    model_name: str
    transform_ops: list[dict[str, Any]]
    threshold: Any  # float | dict | list, as inference.yml gives it
    label_list: list[str] | None
    raw_config: dict[str, Any] = field(default_factory=dict, repr=False)


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
        if not isinstance(labels, list):
            raise ModelError(f"{path}: PostProcess.MultiLabelThreshOutput.label_list must be "
                             "a list of names")
        labels = [str(name) for name in labels]
    return out.get("threshold", 0.5), labels


def load_model_dir(model_dir: str | Path) -> ModelSpec:
    """Read a model directory; every missing or corrupt file is named in the error."""
    root = Path(model_dir).expanduser()
    if not root.exists():
        raise ModelError(f"{root}: model directory does not exist")
    if not root.is_dir():
        raise ModelError(f"{root}: not a directory (pass the folder that holds "
                         f"{CONFIG_FILE}, {PARAMS_FILE} and {GRAPH_FILES[0]})")
    graph = next((root / g for g in GRAPH_FILES if (root / g).is_file()), None)
    if graph is None:
        raise ModelError(f"{root}: missing the network graph ({' or '.join(GRAPH_FILES)})")
    _need(graph, "network graph")
    params = _need(root / PARAMS_FILE, "weights file")
    cfg_path = _need(root / CONFIG_FILE, "model configuration")
    try:
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelError(f"{cfg_path}: corrupt model configuration ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ModelError(f"{cfg_path}: corrupt model configuration (expected a mapping)")
    pre = cfg.get("PreProcess") or {}
    ops = pre.get("transform_ops") if isinstance(pre, dict) else None
    if not isinstance(ops, list) or not ops:
        raise ModelError(f"{cfg_path}: PreProcess.transform_ops is missing or empty")
    threshold, labels = _parse_postprocess(cfg, cfg_path)
    glob = cfg.get("Global") or {}
    name = str(glob.get("model_name") or root.name)
    return ModelSpec(root, graph, params, name, ops, threshold, labels, cfg)
