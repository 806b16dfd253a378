"""Pipeline configuration: PaddleX's pipeline YAML, merged with call arguments.

Precedence: call arguments > pipeline YAML > the model's inference.yml.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import MlclsError, UsageError

PIPELINE_NAMES = ("multi_label_image_classification", "image_multilabel_classification")
MODULE_KEY = "ImageMultiLabelClassification"

DEFAULT_CONFIG: dict[str, Any] = {
    "pipeline_name": "multi_label_image_classification",
    "SubModules": {
        MODULE_KEY: {
            "module_name": "image_multilabel_classification",
            "model_name": "PP-LCNet_x1_0_ML",
            "model_dir": None,
            "batch_size": 1,
            "threshold": None,  # null: the model's own (inference.yml)
        },
    },
}


MAX_YAML_BYTES = 4 * 1024 * 1024
MAX_YAML_ALIASES = 200
MAX_YAML_NODES = 1_000_000  # after alias expansion


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting aliases: a few nested aliases can stand for billions
    of nodes ("billion laughs"), which cost nothing to load but everything to walk."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases (*name)")
        return super().compose_node(parent, index)


def _expanded_size(data: Any, limit: int) -> int:
    """How many nodes ``data`` has once aliases are expanded, stopping past ``limit``."""
    seen: dict[int, int] = {}

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        known = seen.get(id(node))
        if known is not None:
            return known
        seen[id(node)] = limit + 1  # a cycle (an alias inside itself) counts as too large
        children = node.items() if isinstance(node, dict) else ((None, v) for v in node)
        total = 1
        for key, value in children:
            total += size(key) + size(value)
            if total > limit:
                break
        seen[id(node)] = total
        return total

    return size(data)


def load_yaml_file(path: Path, error: type[MlclsError] = UsageError,
                   what: str = "YAML file") -> Any:
    """A YAML file from anyone, bounded: at most ``MAX_YAML_BYTES``, safe types only, a
    bounded size once aliases are expanded. Problems raise ``error`` naming the file."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(raw) > MAX_YAML_BYTES:
        raise error(f"{path}: the {what} is larger than {MAX_YAML_BYTES} bytes")
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_BoundedLoader)  # noqa: S506 - safe
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise error(f"{path}: corrupt {what}, cannot parse it ({exc})") from None
    except RecursionError:
        raise error(f"{path}: the {what} is nested too deeply") from None
    if _expanded_size(data, MAX_YAML_NODES) > MAX_YAML_NODES:
        raise error(f"{path}: the {what} expands to more than {MAX_YAML_NODES} values "
                    "(aliases nested into an enormous document)")
    return data


@dataclass
class PipelineSettings:
    model_name: str | None = None
    model_dir: str | None = None
    batch_size: int = 1
    threshold: Any = None
    device: str | None = None
    engine: str | None = None  # auto (None) or an engine's name
    use_hpip: Any = None  # PaddleX's high-performance switch, mapped by mlcls.hpi
    hpi_config: Any = None


def default_config_text() -> str:
    return yaml.safe_dump(DEFAULT_CONFIG, sort_keys=False, allow_unicode=True)


def load_pipeline_config(pipeline: str | dict | None) -> dict[str, Any]:
    """A pipeline name, a YAML path or an already-parsed dict -> the config dict."""
    if pipeline is None:
        return copy.deepcopy(DEFAULT_CONFIG)
    if isinstance(pipeline, dict):
        return copy.deepcopy(pipeline)
    text = str(pipeline)
    if text in PIPELINE_NAMES:
        return copy.deepcopy(DEFAULT_CONFIG)
    path = Path(text).expanduser()
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UsageError(f"pipeline config {path}: no such file")
        data = load_yaml_file(path, UsageError, "pipeline config")
        if not isinstance(data, dict):
            raise UsageError(f"pipeline config {path}: expected a mapping at the top level")
        name = data.get("pipeline_name")
        if name is not None and name not in PIPELINE_NAMES:
            raise UsageError(f"pipeline config {path}: pipeline_name '{name}' is not one of "
                             f"{', '.join(PIPELINE_NAMES)}")
        return data
    raise UsageError(f"unknown pipeline '{text}': use {' or '.join(PIPELINE_NAMES)}, or the "
                     "path of a pipeline YAML")


def _positive_int(value: Any, what: str) -> int:
    try:
        out = int(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} must be a positive integer, got {value!r}") from exc
    if out < 1 or isinstance(value, bool) or (isinstance(value, float) and value != out):
        raise UsageError(f"{what} must be a positive integer, got {value!r}")
    return out


def settings_from_config(cfg: dict[str, Any]) -> PipelineSettings:
    """Read the model settings from either layout PaddleX documents: ``SubModules`` (3.x) or
    the older ``Pipeline: {model, batch_size, device}``."""
    module = (cfg.get("SubModules") or {}).get(MODULE_KEY)
    legacy = cfg.get("Pipeline")
    out = PipelineSettings(device=cfg.get("device"), engine=cfg.get("engine"),
                           use_hpip=cfg.get("use_hpip"), hpi_config=cfg.get("hpi_config"))
    if isinstance(module, dict):
        out.model_name = module.get("model_name")
        out.model_dir = module.get("model_dir")
        out.batch_size = module.get("batch_size", 1)
        out.threshold = module.get("threshold")
        out.device = module.get("device", out.device)
        out.engine = module.get("engine", out.engine)
        out.use_hpip = module.get("use_hpip", out.use_hpip)
        out.hpi_config = module.get("hpi_config", out.hpi_config)
    elif isinstance(legacy, dict):
        model = legacy.get("model")
        _need_text(model, "Pipeline.model")
        if model and (Path(str(model)).expanduser().is_dir() or "/" in str(model)):
            out.model_dir = str(model)
        else:
            out.model_name = model
        out.batch_size = legacy.get("batch_size", 1)
        out.threshold = legacy.get("threshold")
        out.device = legacy.get("device", out.device)
        out.engine = legacy.get("engine", out.engine)
    else:
        raise UsageError(f"pipeline config: expected SubModules.{MODULE_KEY} or Pipeline "
                         "with the model settings")
    out.batch_size = _positive_int(1 if out.batch_size is None else out.batch_size,
                                   "batch_size")
    for key in ("model_name", "model_dir", "device"):
        _need_text(getattr(out, key), key)
    if out.engine is not None and not isinstance(out.engine, str):
        raise UsageError(f"pipeline config: engine must be a name (auto, paddle...), got "
                         f"{out.engine!r}")
    return out


def _need_text(value: Any, key: str) -> None:
    if value is None or isinstance(value, str):
        return
    shown = (f"a {type(value).__name__} with {len(value)} entries"
             if isinstance(value, (dict, list)) else repr(value)[:80])
    raise UsageError(f"pipeline config: {key} must be a string, got {shown}")


def merge(settings: PipelineSettings, **overrides: Any) -> PipelineSettings:
    for key, value in overrides.items():
        if value is not None:
            setattr(settings, key, value)
    settings.batch_size = _positive_int(settings.batch_size, "batch_size")
    return settings
