"""Turning trained weights into a model directory the pipeline loads unchanged:
``inference.json`` + ``inference.pdiparams`` (sigmoid inside the graph) + ``inference.yml``
(preprocessing, threshold, label_list), PaddleX's layout."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError
from ..results import atomic_write, publish_dir
from .data import preprocess_ops

CONFIG_NAME = "train_config.json"
WEIGHTS_NAME = "model.pdparams"


def inference_config(model_name: str, image_size: int, label_names: list[str],
                     threshold: Any = 0.5) -> dict[str, Any]:
    return {
        "Global": {"model_name": model_name},
        "PreProcess": {"transform_ops": preprocess_ops(image_size)},
        "PostProcess": {"MultiLabelThreshOutput": {"threshold": threshold,
                                                   "label_list": list(label_names)}},
    }


def write_inference_yml(path: Path, config: dict[str, Any]) -> None:
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    atomic_write(Path(path), lambda fh: fh.write(text), mode="w")


def export_network(net, target: Path, *, model_name: str, image_size: int,
                   label_names: list[str], threshold: Any = 0.5) -> Path:
    """Save ``net`` (logits out) with a sigmoid appended. Written to a temporary folder
    first and moved into place, so an existing export is only replaced by a complete one."""
    import paddle

    from .models import WithSigmoid

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    was_training = net.training
    net.eval()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        spec = [paddle.static.InputSpec([None, 3, image_size, image_size], "float32", "x")]
        paddle.jit.save(WithSigmoid(net), str(tmp / "inference"), input_spec=spec)
        write_inference_yml(tmp / "inference.yml", inference_config(
            model_name, image_size, label_names, threshold))
        publish_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if was_training:
            net.train()
    return target


def find_train_config(checkpoint: Path) -> dict[str, Any]:
    """The training run's settings, from the checkpoint's folder or one of its parents."""
    start = checkpoint if checkpoint.is_dir() else checkpoint.parent
    for folder in (start, *start.parents[:2]):
        path = folder / CONFIG_NAME
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    raise UsageError(f"{checkpoint}: no {CONFIG_NAME} beside it or above it; export a "
                     "checkpoint written by `mlcls train`")


def weights_file(checkpoint: str | Path) -> Path:
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise UsageError(f"{path}: checkpoint weights not found (pass a .pdparams file or a "
                         "folder that holds model.pdparams, e.g. OUTPUT/epoch_3)")
    return path


def export_checkpoint(checkpoint: str | Path, target: str | Path,
                      threshold: Any = None) -> Path:
    """Rebuild the network a checkpoint was trained with, load it, and export it."""
    import paddle

    from .models import build_model

    weights = weights_file(checkpoint)
    cfg = find_train_config(weights)
    net = build_model(cfg["model"], len(cfg["label_names"]), head=cfg.get("head", "mldecoder"))
    state = paddle.load(str(weights))
    missing, unexpected = net.set_state_dict(state)
    if missing or unexpected:
        raise UsageError(f"{weights}: does not match {cfg['model']} with "
                         f"{len(cfg['label_names'])} classes (missing {len(missing)}, "
                         f"unexpected {len(unexpected)} tensors)")
    return export_network(net, Path(target), model_name=cfg["model"],
                          image_size=int(cfg["image_size"]), label_names=cfg["label_names"],
                          threshold=0.5 if threshold is None else threshold)
