"""Tagging a whole image collection on Ray Data.

The job is two Ray Data stages, streamed so that decoding overlaps inference:

1. ``decode_inputs`` (stateless CPU tasks): each listed input is read (a local path or URL as
   the pipeline reads it, any other URI through pyarrow's filesystems) and decoded to RGB
   pixels exactly as the pipeline decodes them, then resized by the model's first operation
   when that is a resize (``leading_resize``); an input with several pages gives one row per
   page; an input that cannot be read gives a row that carries its error instead of pixels.
2. ``Tagger`` (a pool of stateful actors): each actor holds one pipeline
   (``mlcls.create_pipeline``) on one device and tags the decoded rows it is handed. The
   pipeline preprocesses as always: its resize finds the image already at its size and keeps
   it, so the scores are those of ``predict`` on the file.

Ray's fault tolerance keeps the output whole: an actor that dies is restarted and the batch it
held is run again (``max_restarts``, ``max_task_retries``), so every input gives exactly one
row (one per page).
"""

from __future__ import annotations

import glob as globbing
import inspect
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MlclsError, UsageError

log = logging.getLogger(__name__)

RESULT_COLUMNS = ("input_path", "page_index", "class_ids", "scores", "label_names", "device",
                  "engine", "error")
MANIFEST_NAME = "_mlcls_batch.json"
ROWS_PER_FILE = 1000
LISTING_SUFFIXES = (".txt", ".lst", ".csv", ".parquet")
# Which column of a CSV or Parquet listing holds the paths (else its first column).
PATH_COLUMNS = ("input_path", "path", "url", "uri", "file", "filename")
DOCUMENT_SUFFIXES = frozenset({".pdf"})
# Ray masks the visible devices of these types per worker (CUDA_VISIBLE_DEVICES,
# ASCEND_RT_VISIBLE_DEVICES), so a worker's one device is always its logical id 0.
_RAY_MASKED = {"gpu": "GPU", "npu": "NPU"}
_GLOB_CHARS = frozenset("*?[")
_LIST_PLACE = re.compile(r"^input\[\d+\]: ")
_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401 (the Data library is a separate part of the extra)
    except ImportError as exc:
        raise UsageError(f"this needs Ray Data ({exc.name} is missing): "
                         "pip install 'mlcls[ray]'") from None
    return ray


def _pyarrow():
    try:
        import pyarrow as pa
    except ImportError:
        raise UsageError("this needs pyarrow: pip install 'mlcls[ray]'") from None
    return pa


# -- settings ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchSettings:
    """What every worker's pipeline is built from (``create_pipeline``'s arguments).
    ``pipeline`` is a pipeline name, a YAML path (read once, here) or the YAML as a dict."""

    pipeline: str | dict = "multi_label_image_classification"
    model: str | None = None
    model_dir: str | None = None
    device: str | None = None
    engine: str | None = None
    batch_size: int = 8
    threshold: Any = None
    fallback: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) \
                or self.batch_size < 1:
            raise UsageError(f"batch_size must be a whole number >= 1, got {self.batch_size!r}")
        if isinstance(self.pipeline, str) and self.pipeline.lower().endswith((".yaml", ".yml")):
            # Workers on other nodes cannot read this machine's files: ship the YAML's content.
            from ..config import load_pipeline_config

            object.__setattr__(self, "pipeline", load_pipeline_config(self.pipeline))
        if self.model_dir is not None:
            # Absolute, since Ray's workers do not run in this process's folder.
            object.__setattr__(self, "model_dir", _absolute(os.fspath(self.model_dir)))

    def pipeline_kwargs(self, device: str | None = None) -> dict[str, Any]:
        """``create_pipeline``'s keyword arguments, on ``device`` (default: ours).
        ``engine`` is passed only when given, and refused where this mlcls has no engine
        choice, rather than silently ignored."""
        kwargs: dict[str, Any] = {
            "pipeline": self.pipeline, "device": device if device is not None else self.device,
            "model": self.model, "model_dir": self.model_dir, "batch_size": self.batch_size,
            "threshold": self.threshold, "fallback": self.fallback}
        if self.engine is not None:
            from ..pipeline import create_pipeline

            if "engine" not in inspect.signature(create_pipeline).parameters:
                raise UsageError(f"engine '{self.engine}': this mlcls has no engine choice "
                                 "(create_pipeline takes no engine argument)")
            kwargs["engine"] = self.engine
        return kwargs

    def identity(self) -> dict[str, Any]:
        """What two runs writing into one output folder must share, or their rows would mean
        different things (the device may differ: each row records its own)."""
        return {"pipeline": self.pipeline, "model": self.model, "model_dir": self.model_dir,
                "engine": self.engine, "threshold": self.threshold}


@dataclass(frozen=True)
class WorkerPlan:
    """How many inference workers, the device string each one's pipeline gets, and the Ray
    resources each one asks for."""

    num_workers: int
    device: str | None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    resources: dict[str, float] | None = None


def device_type_only(device: str | None):
    """The parsed device (or ``"auto"``), refusing ids: Ray chooses each worker's device."""
    from ..devices import parse_device

    parsed = parse_device(device)
    if not isinstance(parsed, str) and parsed.ids:
        raise UsageError(f"device '{device}': in a Ray job each worker is given its device by "
                         f"Ray; pass the type alone (--device {parsed.type}) and choose how "
                         "many workers with --num_workers")
    return parsed


def plan_workers(device: str | None, cluster: dict[str, float] | None,
                 num_workers: int | None, nodes: int = 1) -> WorkerPlan:
    """Map ``--device`` onto Ray's resource requests. ``gpu`` and ``npu`` workers ask Ray for
    one device each (Ray masks the rest, so each sees its own as id 0): by default one worker
    per device in the cluster. Other accelerator types ask for a custom resource of the type's
    upper-case name (``ray start --resources '{"XPU": 1}'``). ``cpu`` and ``auto`` workers ask
    for one CPU; by default one per node, since each engine already computes on every core.
    ``cluster`` is Ray's ``cluster_resources()``, or None where Ray is not running yet
    (``serve run`` builds the app first): then nothing is checked and the default is one."""
    from ..devices import AUTO

    if num_workers is not None and (isinstance(num_workers, bool) or num_workers < 1):
        raise UsageError(f"num_workers must be at least 1, got {num_workers!r}")
    parsed = device_type_only(device)
    if parsed == AUTO:
        return WorkerPlan(num_workers or max(1, nodes), device)
    if parsed.type == "cpu":
        return WorkerPlan(num_workers or max(1, nodes), "cpu")
    resource = _RAY_MASKED.get(parsed.type, parsed.type.upper())
    if cluster is None:
        cluster = {resource: float(num_workers or 1)}
    have = int(cluster.get(resource, 0))
    if have < 1:
        raise UsageError(f"device '{device}': the Ray cluster has no '{resource}' resource "
                         f"(it has {', '.join(sorted(cluster)) or 'none'}); start the nodes "
                         f"with their {parsed.type} devices visible"
                         + ("" if parsed.type in _RAY_MASKED else
                            f" and declared (ray start --resources '{{\"{resource}\": N}}')"))
    count = num_workers or have
    if count > have:
        raise UsageError(f"--num_workers {count}: the cluster has only {have} '{resource}' "
                         "(one worker per device)")
    if parsed.type == "gpu":
        return WorkerPlan(count, "gpu:0", num_gpus=1.0)
    return WorkerPlan(count, f"{parsed.type}:0", resources={resource: 1.0})


# -- listing the inputs -----------------------------------------------------------------------

def _is_uri(text: str) -> bool:
    """A filesystem URI for pyarrow (s3://, gs://, hdfs://, file://...), not an http URL."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isalnum() and scheme.lower() not in ("http", "https")


def _is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


def _absolute(path: str) -> str:
    """A local path made absolute (Ray's workers do not share this process's folder); URLs
    and URIs as they are."""
    return path if _is_url(path) or _is_uri(path) else os.path.abspath(path)


def _filesystem(uri: str):
    from pyarrow import fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:
        raise UsageError(f"{uri}: not a filesystem pyarrow can open ({exc})") from None


def _wanted(name: str) -> bool:
    from ..inputs import IMAGE_SUFFIXES

    suffix = Path(name).suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix in DOCUMENT_SUFFIXES


def _paths_from_table(table, where: str) -> list[str]:
    if table.num_columns == 0:
        raise UsageError(f"{where}: the listing has no columns")
    names = [n.lower() for n in table.column_names]
    pick = next((table.column_names[names.index(c)] for c in PATH_COLUMNS if c in names),
                table.column_names[0])
    return [str(v).strip() for v in table.column(pick).to_pylist()
            if v is not None and str(v).strip()]


def _read_listing(data: bytes, suffix: str, where: str) -> list[str]:
    """Paths or URLs, one per line (.txt, .lst; blank lines and # comments skipped), or a
    column of a CSV or Parquet file."""
    import io

    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return _paths_from_table(pq.read_table(io.BytesIO(data)), where)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{where}: not a readable Parquet file ({exc})") from None
    text = data.decode("utf-8-sig", errors="replace")
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        try:
            return _paths_from_table(pcsv.read_csv(io.BytesIO(text.encode())), where)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{where}: not a readable CSV file ({exc})") from None
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _relative_to(listing_dir: str, entry: str, remote: bool) -> str:
    """A relative path in a listing is relative to the listing's own folder."""
    if _is_url(entry) or _is_uri(entry) or os.path.isabs(entry):
        return entry
    if remote:
        return f"{listing_dir.rstrip('/')}/{entry}"
    return os.path.normpath(os.path.join(listing_dir, entry))


def list_inputs(src: str | os.PathLike) -> list[str]:
    """Every input ``src`` names, in a stable order, each once: a local folder (recursive),
    a glob, a .txt/.csv/.parquet listing, an http(s) URL, a single file, or any filesystem URI
    pyarrow understands (``s3://bucket/prefix``: a folder or listing there)."""
    src = os.fspath(src)
    if not src.strip():
        raise UsageError("--input: an empty string names no input")
    if _is_url(src):
        found = [src]
    elif _is_uri(src):
        found = _list_remote(src)
    else:
        found = _list_local(src)
    unique = list(dict.fromkeys(_absolute(p) for p in found))
    if len(unique) < len(found):
        log.warning("%s: %d input(s) listed more than once are tagged once", src,
                    len(found) - len(unique))
    if not unique:
        raise UsageError(f"{src}: no image files found (looked for "
                         f"{', '.join(sorted(_suffixes()))})")
    return unique


def _suffixes() -> set[str]:
    from ..inputs import IMAGE_SUFFIXES

    return set(IMAGE_SUFFIXES) | set(DOCUMENT_SUFFIXES)


def _list_local(src: str) -> list[str]:
    if any(c in _GLOB_CHARS for c in src) and not os.path.exists(src):
        matches = sorted(p for p in globbing.glob(src, recursive=True) if os.path.isfile(p))
        if not matches:
            raise UsageError(f"{src}: the pattern matches no file")
        return matches
    if os.path.isdir(src):
        found = []
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            found.extend(os.path.join(dirpath, n) for n in filenames if _wanted(n))
        return sorted(found)
    if os.path.isfile(src):
        suffix = Path(src).suffix.lower()
        if suffix in LISTING_SUFFIXES:
            try:
                data = Path(src).read_bytes()
            except OSError as exc:
                raise UsageError(f"{src}: cannot read the listing ({exc.strerror})") from None
            entries = [_relative_to(os.path.dirname(src) or ".", e, remote=False)
                       for e in _read_listing(data, suffix, src)]
            # A folder in a listing stands for the images below it, each its own input.
            return [path for e in entries
                    for path in (_list_local(e) if os.path.isdir(e) else [e])]
        return [src]
    raise UsageError(f"{src}: no such file, folder or pattern")


def _list_remote(src: str) -> list[str]:
    from pyarrow import fs as pafs

    fs, path = _filesystem(src)
    scheme = src.partition("://")[0]
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            entries = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            return sorted(f"{scheme}://{e.path}" for e in entries
                          if e.type == pafs.FileType.File and _wanted(e.base_name))
        if info.type == pafs.FileType.NotFound:
            raise UsageError(f"{src}: not found")
        suffix = Path(path).suffix.lower()
        if suffix in LISTING_SUFFIXES:
            with fs.open_input_stream(path) as fh:
                data = fh.read()
            return [_relative_to(src.rsplit("/", 1)[0], e, remote=True)
                    for e in _read_listing(data, suffix, src)]
    except OSError as exc:
        raise UsageError(f"{src}: cannot list it ({exc})") from None
    return [src]


def read_inputs(src: str | os.PathLike | Iterable[str], *, blocks: int | None = None):
    """A Ray Dataset with one ``input_path`` row per input (see ``list_inputs``); a list of
    paths or URLs is taken as it is."""
    ray = _ray()
    paths = (list_inputs(src) if isinstance(src, (str, os.PathLike))
             else [_absolute(os.fspath(p)) for p in src])
    return ray.data.from_items([{"input_path": p} for p in paths],
                               override_num_blocks=blocks or _blocks_for(len(paths)))


def _blocks_for(count: int) -> int:
    # Enough blocks that decoding streams ahead of inference and a retried read task redoes
    # little; not so many that scheduling them costs more than the work.
    return max(1, min(count, max(4, count // 32), 20_000))


# -- stage 1: read and decode (CPU tasks) -----------------------------------------------------

def _decoded_schema():
    pa = _pyarrow()
    return pa.schema([("input_path", pa.string()), ("page_index", pa.int64()),
                      ("height", pa.int32()), ("width", pa.int32()),
                      ("pixels", pa.large_binary()), ("error", pa.string())])


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return exc.reason
    if isinstance(exc, MlclsError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _read_uri(uri: str) -> bytes:
    fs, path = _filesystem(uri)
    try:
        with fs.open_input_stream(path) as fh:
            return fh.read()
    except FileNotFoundError:
        raise InputError(uri, "no such file") from None
    except OSError as exc:
        raise InputError(uri, f"cannot read it ({exc})") from None


def load_pages(source: str) -> Iterator[tuple[int | None, np.ndarray | None, str | None]]:
    """``(page_index, rgb, error)`` for each image in ``source``: one for an image, one per
    page for a multi-page document, one with the error for an input that cannot be read.
    Decoding is the pipeline's own (``mlcls.inputs``), so the pixels are the ones
    ``predict`` would have made of the same input."""
    from ..inputs import Sample, expand_inputs

    try:
        items = list(expand_inputs(_read_uri(source) if _is_uri(source) else source))
    except InputError as exc:
        yield None, None, exc.reason
        return
    for n, item in enumerate(items):
        if not isinstance(item, Sample):
            yield None, None, _reason(item)
            continue
        page = getattr(item, "page_index", None)
        if page is None and len(items) > 1:
            page = n
        try:
            yield page, item.load(), None
        except Exception as exc:  # one bad input (or page) must not stop the batch
            yield page, None, _reason(exc)


def leading_resize(transform_ops: list[Any]) -> dict[str, Any] | None:
    """The model's first image operation when it is a ``ResizeImage`` that applying again
    leaves as it is (the next operation is not another resize): it can then run in the decoding
    tasks, and the pipeline's own resize finds each image already at its size and keeps it.
    None otherwise (the pipeline does all of it)."""
    ops = [op for op in transform_ops
           if not (isinstance(op, dict) and list(op) == ["DecodeImage"])]
    if not ops or not isinstance(ops[0], dict) or list(ops[0]) != ["ResizeImage"]:
        return None
    if len(ops) > 1 and isinstance(ops[1], dict) and list(ops[1]) == ["ResizeImage"]:
        return None  # a second resize would change what the first one made
    return ops[0]


_RESIZERS: dict[str, Any] = {}


def _resizer(op: dict[str, Any]):
    """The core's preprocessing of that one operation, built once per worker process."""
    key = json.dumps(op, sort_keys=True, default=str)
    if key not in _RESIZERS:
        from ..preprocess import NumpyPreprocessor

        _RESIZERS[key] = NumpyPreprocessor([op])
    return _RESIZERS[key]


def decode_inputs(batch, resize: dict[str, Any] | None = None, keep: list[str] = ()):
    """Ray Data task: ``input_path`` rows in, one decoded row per image or page out, resized
    by ``resize`` (see ``leading_resize``) when given; the columns ``keep`` are carried along
    (repeated for each page)."""
    pa = _pyarrow()
    resizer = _resizer(resize) if resize else None
    cols: dict[str, list] = {name: [] for name in _decoded_schema().names}
    origin: list[int] = []
    for row, source in enumerate(batch.column("input_path").to_pylist()):
        for page, rgb, error in load_pages(source):
            origin.append(row)
            if rgb is not None and resizer is not None:
                try:
                    rgb = resizer.prepare(rgb)
                except Exception as exc:  # one image, not the batch
                    rgb, error = None, _reason(exc)
            cols["input_path"].append(source)
            cols["page_index"].append(page)
            cols["error"].append(error)
            if rgb is None:
                cols["height"].append(None)
                cols["width"].append(None)
                cols["pixels"].append(None)
            else:
                rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
                cols["height"].append(rgb.shape[0])
                cols["width"].append(rgb.shape[1])
                cols["pixels"].append(rgb.tobytes())
    table = pa.table(cols, schema=_decoded_schema())
    return _carry(table, batch.select(list(keep)).take(pa.array(origin, pa.int64()))
                  if keep else None)


def _carry(table, extra):
    """``table`` with the columns of ``extra`` (as many rows) appended."""
    if extra is not None:
        for field, column in zip(extra.schema, extra.columns):
            table = table.append_column(field, column)
    return table


# -- stage 2: inference (stateful actors) -----------------------------------------------------

def result_schema():
    pa = _pyarrow()
    return pa.schema([("input_path", pa.string()), ("page_index", pa.int64()),
                      ("class_ids", pa.list_(pa.int64())), ("scores", pa.list_(pa.float64())),
                      ("label_names", pa.list_(pa.string())), ("device", pa.string()),
                      ("engine", pa.string()),
                      ("error", pa.string())])


class Tagger:
    """A Ray Data actor: one pipeline on one device, tagging batches of decoded rows. Each row
    gives exactly one output row; a row that arrived with an error keeps it."""

    def __init__(self, settings: BatchSettings, device: str | None = None):
        from .. import create_pipeline

        self.pipeline = create_pipeline(**settings.pipeline_kwargs(device))

    def __call__(self, batch):
        pa = _pyarrow()
        rows = batch.num_rows
        out: dict[str, list] = {name: [None] * rows for name in RESULT_COLUMNS}
        out["input_path"] = batch.column("input_path").to_pylist()
        out["page_index"] = batch.column("page_index").to_pylist()
        out["error"] = batch.column("error").to_pylist()
        heights = batch.column("height").to_pylist()
        widths = batch.column("width").to_pylist()
        pixels = batch.column("pixels")
        todo = [i for i in range(rows) if out["error"][i] is None]
        images = []
        for i in todo:
            rgb = np.frombuffer(pixels[i].as_buffer(), dtype=np.uint8)
            # predict takes arrays as BGR (PaddleX's convention) and turns them back to RGB.
            images.append(rgb.reshape(heights[i], widths[i], 3)[:, :, ::-1])
        results = list(self.pipeline.predict(images)) if images else []
        if len(results) != len(todo):
            raise RuntimeError(f"the pipeline gave {len(results)} results for {len(todo)} "
                               "images")
        for i, res in zip(todo, results):
            data = res.to_dict()
            if not res.ok:
                # The pipeline names a path-less input by its place in the list it was
                # given ("input[3]: ..."); the row's input_path names it better.
                text = str(data.get("error") or "inference failed")
                out["error"][i] = _LIST_PLACE.sub("", text, count=1)
                continue
            # "engine" is null where the pipeline's results do not name one.
            for key in ("class_ids", "scores", "label_names", "device", "engine"):
                out[key][i] = data.get(key)
        carried = [n for n in batch.column_names if n not in _decoded_schema().names]
        return _carry(pa.table(out, schema=result_schema()),
                      batch.select(carried) if carried else None)

    def __del__(self) -> None:
        pipeline = getattr(self, "pipeline", None)
        if pipeline is not None:
            pipeline.close()


def tag_dataset(dataset, settings: BatchSettings | None = None, *,
                num_workers: int | None = None, max_task_retries: int = 3,
                worker: type[Tagger] = Tagger, **pipeline_args: Any):
    """Tag a Ray Dataset whose ``input_path`` column holds paths, URLs or filesystem URIs;
    returns a lazy Ray Dataset with one row per input (per page for multi-page inputs): the
    columns ``RESULT_COLUMNS``, then the dataset's other columns, carried along. Pass
    ``settings`` or ``create_pipeline``'s arguments (``model_dir=...``, ``device=...``).
    ``max_task_retries`` bounds how often a batch is retried on a fresh worker after its
    worker died (an input that kills every worker it meets stops the job rather than loop);
    ``worker`` may be a subclass of ``Tagger``."""
    ray = _ray()
    if settings is None:
        settings = BatchSettings(**pipeline_args)
    elif pipeline_args:
        settings = replace(settings, **pipeline_args)
    names = dataset.schema().names
    if "input_path" not in names:
        raise UsageError("the dataset needs an 'input_path' column (paths, URLs or URIs)")
    keep = [n for n in names if n != "input_path"]
    clash = sorted(set(keep) & (set(RESULT_COLUMNS) | set(_decoded_schema().names)))
    if clash:
        raise UsageError(f"the dataset's column(s) {', '.join(clash)} would be overwritten by "
                         "the results; rename them first")
    settings.pipeline_kwargs()  # refuse an unsupported engine here, not in every worker
    resources = ray.cluster_resources() if ray.is_initialized() else None
    nodes = sum(1 for n in ray.nodes() if n.get("Alive")) if ray.is_initialized() else 1
    plan = plan_workers(settings.device, resources, num_workers, nodes)
    decoded = dataset.map_batches(
        decode_inputs, batch_format="pyarrow", batch_size=max(1, settings.batch_size),
        fn_kwargs={"resize": _resize_for(settings), "keep": keep}, num_cpus=1)
    named: dict[str, Any] = {"num_cpus": plan.num_cpus}
    if plan.num_gpus:
        named["num_gpus"] = plan.num_gpus
    if plan.resources:
        named["resources"] = plan.resources
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for the retry bounds yet and warns on the generic
        # ones; the bounds matter more than the warning (Ray's default retries forever).
        warnings.simplefilter("ignore", DeprecationWarning)
        return decoded.map_batches(
            worker, batch_format="pyarrow", batch_size=settings.batch_size,
            fn_constructor_args=(settings, plan.device),
            compute=ray.data.ActorPoolStrategy(size=plan.num_workers),
            max_restarts=-1, max_task_retries=max_task_retries, **named)


# -- the output folder ------------------------------------------------------------------------

class OutputFolder:
    """DST: a local folder or a filesystem URI, holding Parquet files and the manifest that
    says which settings wrote them."""

    def __init__(self, dst: str | os.PathLike):
        from pyarrow import fs as pafs

        self.uri = os.fspath(dst)
        if _is_uri(self.uri):
            self.fs, self.path = _filesystem(self.uri)
        else:
            self.fs, self.path = pafs.LocalFileSystem(), os.path.abspath(self.uri)
        self._pafs = pafs

    def entries(self) -> list:
        info = self.fs.get_file_info(self.path)
        if info.type == self._pafs.FileType.NotFound:
            return []
        if info.type != self._pafs.FileType.Directory:
            raise UsageError(f"{self.uri}: exists and is not a folder")
        return self.fs.get_file_info(self._pafs.FileSelector(self.path, recursive=True))

    def parquet_files(self) -> list[str]:
        return sorted(e.path for e in self.entries()
                      if e.type == self._pafs.FileType.File and e.path.endswith(".parquet"))

    def read_manifest(self) -> dict[str, Any] | None:
        path = f"{self.path}/{MANIFEST_NAME}"
        if self.fs.get_file_info(path).type == self._pafs.FileType.NotFound:
            return None
        with self.fs.open_input_stream(path) as fh:
            try:
                return json.loads(fh.read().decode("utf-8"))
            except ValueError as exc:
                raise UsageError(f"{self.uri}/{MANIFEST_NAME}: not readable JSON ({exc})") from None

    def write_manifest(self, data: dict[str, Any]) -> None:
        self.fs.create_dir(self.path, recursive=True)
        text = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
        tmp = f"{self.path}/.{MANIFEST_NAME}.tmp"
        with self.fs.open_output_stream(tmp) as fh:
            fh.write(text)
        self.fs.move(tmp, f"{self.path}/{MANIFEST_NAME}")

    def read_rows(self, files: list[str], columns: list[str]):
        """The given columns of ``files``; a file that cannot be read (a write that was
        interrupted) is named, never skipped: its rows would otherwise be tagged twice."""
        import pyarrow.parquet as pq

        pa = _pyarrow()
        tables = []
        for path in files:
            try:
                tables.append(pq.read_table(path, columns=columns, filesystem=self.fs))
            except (OSError, ValueError, pa.ArrowException) as exc:
                raise UsageError(f"{path}: cannot read this result file ({exc}); it may be "
                                 "left from an interrupted run: remove it and run again "
                                 "with --resume") from None
        if not tables:
            return pa.table({c: pa.array([], type=result_schema().field(c).type)
                             for c in columns})
        return pa.concat_tables(tables)


@dataclass
class BatchSummary:
    rows: int
    failed: int
    inputs: int
    skipped: int
    seconds: float
    output: str

    @property
    def images_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        skipped = f", {self.skipped} input(s) already done skipped" if self.skipped else ""
        return (f"mlcls batch: {self.rows} row(s) from {self.inputs} input(s), {self.failed} "
                f"failed, {self.images_per_second:.1f} images/s{skipped}; results in "
                f"{self.output}")


def _local_model_dir(settings: BatchSettings) -> str | None:
    """The model directory, where this machine can read it without downloading."""
    if settings.model_dir:
        return None if _is_uri(settings.model_dir) else settings.model_dir
    if settings.model:
        return settings.model if os.path.isdir(os.path.expanduser(settings.model)) else None
    if isinstance(settings.pipeline, dict):
        from ..config import settings_from_config

        found = settings_from_config(settings.pipeline).model_dir
        return found if found and os.path.isdir(found) else None
    return None


def _resize_for(settings: BatchSettings) -> dict[str, Any] | None:
    """The resize the decoding tasks may do (``leading_resize``), read from the model's
    inference.yml here; None (resizing stays in the workers) for a model this machine only
    knows by name."""
    where = _local_model_dir(settings)
    if where is None:
        return None
    from ..model import load_model_dir

    return leading_resize(load_model_dir(where).transform_ops)


def _check_settings(settings: BatchSettings) -> None:
    """Fail on the driver, before Ray starts, on what would fail in every worker."""
    from ..postprocess import threshold_vector

    device_type_only(settings.device)
    if settings.model_dir is not None and not _is_uri(settings.model_dir):
        from ..model import load_model_dir

        spec = load_model_dir(settings.model_dir)
        if settings.threshold is not None and spec.label_list:
            threshold_vector(settings.threshold, len(spec.label_list))
    settings.pipeline_kwargs()


def _check_reachable(address: str) -> None:
    """Refuse a ``host:port`` that nothing answers on at once: Ray itself would retry for
    minutes before it gave up."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto", "ray://..." (Ray Client): Ray's own forms, left to Ray
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise MlclsError(f"cannot reach the Ray cluster at {address} "
                         f"({exc.strerror or exc}); start it with `ray start --head` there, "
                         "or leave out --address to run on this machine") from None


def connect_ray(address: str | None, num_cpus: int | None):
    """Ray: the running one (a caller that started it keeps it), the cluster at ``address``,
    or a local one started here. Returns whether we started it (and so stop it)."""
    ray = _ray()
    if address:
        _check_reachable(address)
    if ray.is_initialized():
        return False
    if not address:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
        return True
    try:
        ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise MlclsError(f"cannot join the Ray cluster at {address} ({exc}); is it running, "
                         "and, where the cluster uses token authentication, does this "
                         "machine have its token (RAY_AUTH_MODE=token)?") from None
    return True


def run_batch(src: str | os.PathLike, dst: str | os.PathLike, settings: BatchSettings, *,
              resume: bool = False, address: str | None = None,
              num_workers: int | None = None, num_cpus: int | None = None,
              worker: type[Tagger] = Tagger) -> BatchSummary:
    """``mlcls batch``: tag every input of ``src`` into Parquet files under ``dst``.
    A non-empty ``dst`` is refused unless ``resume``, which skips the inputs it already
    holds, and only when it was written with the same model, pipeline and threshold."""
    _ray()
    _check_settings(settings)
    out = OutputFolder(dst)
    before = out.parquet_files()
    manifest = out.read_manifest()
    others = [e for e in out.entries() if not os.path.basename(e.path).startswith(
        (MANIFEST_NAME, f".{MANIFEST_NAME}"))]
    identity = json.loads(json.dumps(settings.identity(), default=str))
    if others and not resume:
        raise UsageError(f"{out.uri} is not empty ({len(before)} result file(s)); pass "
                         "--resume to skip the inputs it already holds, or choose an empty "
                         "folder")
    if resume and others:
        if manifest is None:
            raise UsageError(f"{out.uri}: holds files but no {MANIFEST_NAME}, so it was not "
                             "written by mlcls batch; choose an empty folder")
        if manifest.get("settings") != identity:
            theirs = manifest.get("settings") or {}
            diff = ", ".join(f"{k}: {theirs.get(k)!r} there, {v!r} now"
                             for k, v in identity.items() if theirs.get(k) != v)
            raise UsageError(f"{out.uri} was written with other settings ({diff}); resuming "
                             "would mix two runs: choose an empty folder")
    inputs = list_inputs(src)
    done: set[str] = set()
    if resume and before:
        done = set(out.read_rows(before, ["input_path"]).column("input_path").to_pylist())
    todo = [p for p in inputs if p not in done]
    skipped = len(inputs) - len(todo)
    if not todo:
        return BatchSummary(0, 0, 0, skipped, 0.0, out.uri)
    started_here = connect_ray(address, num_cpus)
    ray = _ray()
    try:
        out.write_manifest({"settings": identity, "source": os.fspath(src),
                            "written_by": _version()})
        started = time.monotonic()
        tagged = tag_dataset(read_inputs(todo), settings, num_workers=num_workers,
                             worker=worker)
        # Fewer, larger files than one per block; small enough that a run cut short loses
        # little (its complete files are kept by --resume).
        tagged.write_parquet(out.uri, min_rows_per_file=ROWS_PER_FILE)
        seconds = time.monotonic() - started
    except ray.exceptions.RayError as exc:
        raise MlclsError(f"the Ray job failed: {_ray_cause(exc)}") from None
    finally:
        if started_here:
            ray.shutdown()
    new = [f for f in out.parquet_files() if f not in set(before)]
    written = out.read_rows(new, ["input_path", "error"])
    ok = written.column("error").null_count
    return BatchSummary(written.num_rows, written.num_rows - ok, len(todo), skipped,
                        seconds, out.uri)


def _ray_cause(exc: BaseException) -> str:
    """The error a worker raised, from the text Ray wraps around it (the last line of the
    form ``SomeError: message``; mlcls's own errors lose their class name)."""
    texts, seen, link = [], set(), exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        texts.append(str(link))
        link = getattr(link, "cause", None) or link.__cause__
    for text in texts:
        found = [m for m in map(_ERROR_LINE.match, map(str.strip, text.splitlines())) if m]
        if found:
            name, message = found[-1].groups()
            return message if name.startswith("mlcls.") else \
                f"{name.rsplit('.', 1)[-1]}: {message}"
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _version() -> str:
    from .. import __version__

    return f"mlcls {__version__}; python {sys.version.split()[0]}"


__all__ = ["BatchSettings", "BatchSummary", "RESULT_COLUMNS", "Tagger", "list_inputs",
           "load_pages", "plan_workers", "read_inputs", "run_batch", "tag_dataset"]
