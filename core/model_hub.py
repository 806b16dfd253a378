"""Model names: the official PaddleX models (cached, downloaded on first use) and the packaged
demo model.

An official name such as ``PP-LCNet_x1_0_ML`` resolves to ``$MLCLS_HOME/models/<name>``
(default ``~/.cache/mlcls/models/<name>``). A name not in the cache is fetched as
``<base>/<name>_infer.tar`` from PaddleX's hosting of inference models (``$MLCLS_MODEL_BASE_URL``
replaces the base), checked as a complete archive holding a model, and published into the cache
with one rename, so that no process ever sees half a model and an interrupted download leaves
nothing behind.
"""

from __future__ import annotations

import difflib
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.parse
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import BinaryIO, TextIO

from .errors import ModelError
from .fetch import FetchError, stream
from .limits import env_number
from .model import CONFIG_FILE, GRAPH_FILES, PARAMS_FILE, load_model_dir

OFFICIAL_MODELS = (
    "PP-LCNet_x1_0_ML",
    "PP-HGNetV2-B0_ML",
    "PP-HGNetV2-B4_ML",
    "PP-HGNetV2-B6_ML",
    "ResNet50_ML",
    "CLIP_vit_base_patch16_448_ML",
)
DEMO_MODEL = "mlcls-demo"
ENV_HOME = "MLCLS_HOME"
ENV_BASE_URL = "MLCLS_MODEL_BASE_URL"
ENV_DOWNLOAD_TIMEOUT = "MLCLS_DOWNLOAD_TIMEOUT"
# Where PaddleX 3.x fetches its official inference models from.
DEFAULT_BASE_URL = ("https://paddle-model-ecology.bj.bcebos.com/paddlex/"
                    "official_inference_model/paddle3.0.0")
DEFAULT_DOWNLOAD_TIMEOUT = 60.0  # seconds without progress on one socket operation
ENV_DOWNLOAD_DEADLINE = "MLCLS_DOWNLOAD_DEADLINE"
DEFAULT_DOWNLOAD_DEADLINE = 3600.0  # seconds for the whole archive
ENV_DOWNLOAD_MAX_BYTES = "MLCLS_DOWNLOAD_MAX_BYTES"
DEFAULT_DOWNLOAD_MAX_BYTES = 4 * 1024**3  # official archives are well under 1 GiB
_CHUNK = 1 << 20
_SCRATCH_SUFFIX = ".partial"
_STALE_AFTER_S = 24 * 3600
_MODEL_FILES = frozenset({CONFIG_FILE, PARAMS_FILE, *GRAPH_FILES})


def cache_root() -> Path:
    """The folder that holds one sub-folder per downloaded model."""
    home = os.environ.get(ENV_HOME)
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "mlcls"
    return base / "models"


def base_url() -> str:
    return (os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")


def model_url(name: str) -> str:
    return f"{base_url()}/{urllib.parse.quote(name)}_infer.tar"


def demo_model_dir() -> Path:
    """Where the packaged demo model lives (it may not have been built yet)."""
    return Path(str(resources.files("mlcls") / "assets" / "demo_model"))


def _missing_files(root: Path) -> list[str]:
    missing = [f for f in (CONFIG_FILE, PARAMS_FILE) if not (root / f).is_file()]
    if not any((root / g).is_file() for g in GRAPH_FILES):
        missing.append(" or ".join(GRAPH_FILES))
    return missing


def _offline_hint(name: str, target: Path) -> str:
    return (f"to run without the network, pass a model directory instead: --model_dir DIR "
            f"(Python: create_pipeline(..., model_dir=DIR)), a PaddleX inference-model "
            f"directory holding {CONFIG_FILE}, {PARAMS_FILE} and {GRAPH_FILES[0]}; or extract "
            f"{name}_infer.tar by hand into {target}; or set {ENV_BASE_URL} to a reachable "
            "mirror")


def ensure_model(name: str) -> Path:
    """The directory of a named model: the packaged demo, or an official model from the cache,
    downloading it first when it is not there."""
    if name == DEMO_MODEL:
        return _demo_model()
    if name not in OFFICIAL_MODELS:
        known = (DEMO_MODEL, *OFFICIAL_MODELS)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) or [
            k for k in known if k.lower() == name.lower()]
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ModelError(f"unknown model '{name}': not a model directory and not a known name "
                         f"({', '.join(known)}); {hint}pass --model_dir DIR with a PaddleX "
                         "inference-model directory")
    target = cache_root() / name
    if target.exists():
        missing = _missing_files(target)
        if missing:
            raise ModelError(f"{target}: cached model '{name}' is incomplete (missing "
                             f"{', '.join(missing)}); delete that folder to download it again")
        return target
    download_model(name, target)
    return target


def _demo_model() -> Path:
    root = demo_model_dir()
    if not root.is_dir():
        raise ModelError(f"the demo model '{DEMO_MODEL}' is not part of this installation "
                         f"(expected at {root}); pass --model_dir DIR with a PaddleX "
                         "inference-model directory, or an official model name")
    missing = _missing_files(root)
    if missing:
        raise ModelError(f"{root}: the demo model '{DEMO_MODEL}' is incomplete (missing "
                         f"{', '.join(missing)}); reinstall mlcls or pass --model_dir DIR")
    return root


def download_model(name: str, target: Path, url: str | None = None) -> None:
    """Fetch ``name``'s archive, check it and publish it as ``target`` in one rename."""
    url = url or model_url(name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_scratch(target.parent, name)
        # Scratch space beside the cache entry, so that the final rename stays on one
        # filesystem.
        scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=_SCRATCH_SUFFIX,
                                        dir=target.parent))
    except OSError as exc:
        raise ModelError(f"cannot write the model cache {target.parent} ({exc.strerror or exc})"
                         f"; set {ENV_HOME} to a writable folder, or pass --model_dir DIR"
                         ) from None
    try:
        archive = scratch / f"{name}_infer.tar"
        with open(archive, "wb") as fh:
            _fetch(url, fh, name, target)
        unpacked = scratch / name
        _extract_model(archive, unpacked, url)
        archive.unlink()
        try:
            load_model_dir(unpacked)
        except ModelError as exc:
            raise ModelError(f"{url}: the archive holds a model that cannot be loaded "
                             f"({exc})") from None
        try:
            os.rename(unpacked, target)
        except OSError:
            # Another process published the same model first; theirs is complete too.
            if _missing_files(target):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _remove_stale_scratch(cache: Path, name: str) -> None:
    """Scratch folders of downloads killed outright (no chance to clean up) are removed once
    nothing has touched them for a day; a live download keeps writing into its own, and gives
    up after a stall of ``MLCLS_DOWNLOAD_TIMEOUT`` seconds."""
    horizon = time.time() - _STALE_AFTER_S
    for scratch in cache.glob(f".{name}.*{_SCRATCH_SUFFIX}"):
        try:
            newest = max([scratch.stat().st_mtime,
                          *(p.stat().st_mtime for p in scratch.rglob("*"))])
        except OSError:
            continue
        if newest < horizon:
            shutil.rmtree(scratch, ignore_errors=True)


def _timeout() -> float:
    raw = os.environ.get(ENV_DOWNLOAD_TIMEOUT)
    try:
        return float(raw) if raw else DEFAULT_DOWNLOAD_TIMEOUT
    except ValueError:
        return DEFAULT_DOWNLOAD_TIMEOUT


def _fetch(url: str, out: BinaryIO, name: str, target: Path) -> None:
    stall = _timeout()
    deadline = env_number(ENV_DOWNLOAD_DEADLINE, DEFAULT_DOWNLOAD_DEADLINE)
    cap = int(env_number(ENV_DOWNLOAD_MAX_BYTES, DEFAULT_DOWNLOAD_MAX_BYTES))
    bar = _ByteProgress(name, None)

    def start(announced: int | None) -> None:
        bar.total = announced

    try:
        received, expected = stream(url, _sink(out, name, bar), deadline=deadline, stall=stall,
                                    max_bytes=cap, on_start=start)
    except FetchError as exc:
        reason = exc.reason.replace("cannot reach it", "cannot reach the server")
        if "limit" in reason:
            reason += f" ({ENV_DOWNLOAD_MAX_BYTES})"
        reason = reason.replace(f"within {deadline:g} s", f"within {deadline:g} s "
                                                          f"({ENV_DOWNLOAD_DEADLINE})")
        if "no data for" in reason:
            reason += f" ({ENV_DOWNLOAD_TIMEOUT})"
        elif "connection closed after" in reason:
            reason = f"the download is incomplete: {reason}; try again"
        raise ModelError(f"cannot download model '{name}' from {url}: {reason}; "
                         f"{_offline_hint(name, target)}") from None
    finally:
        bar.close()
    if expected is not None and received != expected:
        raise ModelError(f"{url}: download of model '{name}' is incomplete: received "
                         f"{received} of {expected} bytes; try again")
    if received == 0:
        raise ModelError(f"{url}: the server sent an empty body for model '{name}'")


def _sink(out: BinaryIO, name: str, bar: _ByteProgress | None = None):
    """Where the download's chunks go: ``out``, with a full disk reported as what it is."""
    done = 0

    def write(chunk: bytes) -> None:
        nonlocal done
        try:
            out.write(chunk)
        except OSError as exc:  # a full disk is no network problem: say so
            raise ModelError(f"cannot save the download of model '{name}' to "
                             f"{getattr(out, 'name', 'the cache')} ({exc.strerror or exc})"
                             ) from None
        done += len(chunk)
        if bar is not None:
            bar.update(done)

    return write


class _ByteProgress:
    """Bytes received, on one stderr line, only when stderr is a terminal."""

    def __init__(self, name: str, total: int | None, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.name = name
        self.total = total
        self._last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.2 and done != self.total):
            return
        self._last = now
        mib = done / 2**20
        if self.total:
            text = f"{mib:.1f}/{self.total / 2**20:.1f} MiB ({100 * done // self.total}%)"
        else:
            text = f"{mib:.1f} MiB"
        self.stream.write(f"\rdownloading {self.name}: {text}\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()


def _member_path(member: tarfile.TarInfo, url: str) -> PurePosixPath | None:
    """The member's safe relative path, None for entries to skip; unsafe names are errors."""
    raw = member.name.replace("\\", "/")
    path = PurePosixPath(raw)
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ModelError(f"{url}: unsafe path '{member.name}' in the archive; refusing it")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or member.isdir():
        return None
    if not member.isfile():  # links, devices, fifos: a model needs none of them
        raise ModelError(f"{url}: archive member '{member.name}' is not a regular file; "
                         "refusing it")
    return PurePosixPath(*parts)


def _extract_model(archive: Path, dest: Path, url: str) -> None:
    """Unpack the model files of ``archive`` into ``dest``, flattening the archive's single
    top folder (``<name>_infer/``) if it has one."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [(m, p) for m in tar.getmembers()
                       if (p := _member_path(m, url)) is not None]
            model_root = _model_root([p for _, p in members], url)
            dest.mkdir()
            for member, path in members:
                if path.parent != model_root:
                    continue
                src = tar.extractfile(member)
                if src is None:
                    continue
                with src, open(dest / path.name, "wb") as fh:
                    shutil.copyfileobj(src, fh, _CHUNK)
                if (dest / path.name).stat().st_size != member.size:
                    raise ModelError(f"{url}: archive member '{member.name}' is truncated")
    except (tarfile.TarError, EOFError) as exc:
        raise ModelError(f"{url}: not a complete tar archive ({exc})") from None


def _model_root(paths: list[PurePosixPath], url: str) -> PurePosixPath:
    folders = {p.parent for p in paths if p.name == CONFIG_FILE}
    for folder in sorted(folders, key=lambda f: len(f.parts)):
        names = {p.name for p in paths if p.parent == folder}
        if PARAMS_FILE in names and names & set(GRAPH_FILES):
            return folder
    names = sorted(p.name for p in paths if p.name in _MODEL_FILES)
    raise ModelError(f"{url}: the archive does not hold a model (needs {CONFIG_FILE}, "
                     f"{PARAMS_FILE} and {' or '.join(GRAPH_FILES)} in one folder; found "
                     f"{', '.join(names) or 'none of them'})")

