"""The ONNX file of a model, for the engines that read ONNX (ONNX Runtime, OpenVINO).

A model directory holding ``inference.onnx`` (PaddleX's layout for its high-performance mode)
is used as it is. Otherwise the Paddle files are converted with paddle2onnx the first time an
ONNX engine needs them, into a cache keyed by the content of the Paddle files and the versions
of the tools that did the conversion:

    $MLCLS_HOME/onnx/<key>/inference.onnx      (MLCLS_HOME defaults to ~/.cache/mlcls)

Why it is done this way:

- paddle2onnx imports Paddle (1.3 s, 300 MB), so the conversion runs in a child process
  (``python -m mlcls.backends.onnx_model``) and the process that runs the ONNX engine never
  imports Paddle.
- Several processes may start together on a model that is not converted yet (replicas behind
  a load balancer, a Ray pool): an exclusive lock on a file per key makes one of them convert
  while the others wait, and the result is published with one rename, so that no reader ever
  sees half a file. The lock is the kernel's (``flock``): it goes away with a process that
  dies, so a crashed conversion never blocks the next one.
- paddle2onnx leaves the shape arithmetic of some graphs (ML-Decoder's reshapes) unfolded,
  which OpenVINO's ONNX reader refuses ("the input data tensor's rank has to be known"). The
  child folds constants with ONNX Runtime's basic graph optimisations (standard ONNX
  operators only; the result stays portable) when ONNX Runtime is installed, and keeps the
  plain conversion when the folding is unavailable or would leave a non-standard operator.
- paddle2onnx's own optimiser option (polygraphy) installs missing packages with pip on the
  fly; the child turns it off and never lets it run.
- Hashing 33 MB of weights takes ~50 ms; a small index keyed by the files' path, size, inode
  and modification time remembers the content key, so a warm start does not hash again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mlcls.errors import ModelError
from mlcls.model import ONNX_FILE, ModelSpec

FAILED_FILE = "failed.txt"
OPSET = 13
# Bump when the conversion recipe changes, so that old cache entries are not reused.
RECIPE = 2
ENV_HOME = "MLCLS_HOME"
ENV_TIMEOUT = "MLCLS_CONVERT_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
_ONNX_MAGIC_CHECK_BYTES = 64
_MAX_ERROR_LINES = 3


@dataclass(frozen=True)
class OnnxSource:
    """Where an engine finds a model's ONNX file, and how it came to be there."""

    path: Path
    origin: str  # "model directory" | "converted" | "cache"


def cache_root() -> Path:
    home = os.environ.get(ENV_HOME)
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "mlcls"
    return base / "onnx"


def shipped_onnx(model: ModelSpec) -> Path | None:
    """The model directory's own ``inference.onnx``, when it has one."""
    path = getattr(model, "onnx_file", None) or model.model_dir / ONNX_FILE
    path = Path(path)
    return path if path.is_file() and path.stat().st_size > 0 else None


def _version(*dists: str) -> str:
    for dist in dists:
        try:
            return f"{dist}=={metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return f"{dists[0]}==absent"


def converter_versions() -> dict[str, str]:
    """The versions that decide what the conversion writes (part of the cache key)."""
    return {
        "paddle2onnx": _version("paddle2onnx"),
        "paddle": _version("paddlepaddle", "paddlepaddle-gpu"),
        # the constant folding; both ONNX Runtime builds share one module
        "onnxruntime": _version("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
        "recipe": str(RECIPE),
        "opset": str(OPSET),
    }


def converter_problem() -> str | None:
    """Why no conversion can happen here (paddle2onnx or Paddle missing), or None."""
    import importlib.util

    if importlib.util.find_spec("paddle2onnx") is None:
        return ("paddle2onnx is not installed (pip install paddle2onnx), so the Paddle files "
                "cannot be converted to ONNX")
    if importlib.util.find_spec("paddle") is None:
        return ("paddlepaddle is not installed, and paddle2onnx needs it to read the Paddle "
                "files (pip install paddlepaddle)")
    return None


def _stat_id(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_ino}|{st.st_mtime_ns}"


def content_key(model: ModelSpec) -> str:
    """sha256 over the Paddle files' bytes and the converter versions."""
    versions = converter_versions()
    stamp = hashlib.sha256("\n".join([_stat_id(model.graph_file), _stat_id(model.params_file),
                                      json.dumps(versions, sort_keys=True)]).encode())
    index = cache_root() / "index" / stamp.hexdigest()[:40]
    try:
        known = index.read_text(encoding="ascii").strip()
        if len(known) == 64:
            return known
    except OSError:
        pass
    digest = hashlib.sha256()
    for part in (model.graph_file, model.params_file):
        digest.update(part.suffix.encode() + b"\0")
        with open(part, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    digest.update(json.dumps(versions, sort_keys=True).encode())
    key = digest.hexdigest()
    try:
        _publish_bytes(index, key.encode("ascii"))
    except OSError:
        pass  # the index only saves time; an unwritable one costs a hash per start
    return key


def _plain_mode() -> int:
    """The permissions a plain ``open(..., "w")`` would give (temporary files start private,
    and a cache shared by a service account and its users must stay readable)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _publish_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, _plain_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _looks_like_onnx(path: Path) -> bool:
    """A cheap sanity check of a cached file (a protobuf starting with a known field)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_ONNX_MAGIC_CHECK_BYTES)
    except OSError:
        return False
    # ModelProto's first fields are ir_version (tag 0x08) or, rarely, opset_import (0x42)
    return len(head) > 2 and head[0] in (0x08, 0x12, 0x1a, 0x22, 0x3a, 0x42)


def _timeout() -> float:
    raw = os.environ.get(ENV_TIMEOUT)
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError as exc:
        raise ModelError(f"{ENV_TIMEOUT}={raw!r} is not a number of seconds") from exc
    return value if value > 0 else DEFAULT_TIMEOUT_S


class _Lock:
    """An exclusive ``flock`` on ``path``, waited for up to ``timeout`` seconds."""

    def __init__(self, path: Path, timeout: float, what: str):
        self.path, self.timeout, self.what = path, timeout, what
        self.fd: int | None = None

    def __enter__(self) -> _Lock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                os.close(self.fd)
                raise ModelError(f"{self.what}: another process has been converting it to "
                                 f"ONNX for over {self.timeout:.0f} s (lock {self.path}); "
                                 f"raise {ENV_TIMEOUT} or remove a stuck process")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


def onnx_for(model: ModelSpec) -> OnnxSource:
    """The ONNX file of ``model``: its own, or the cached conversion (converting it now when
    there is none). Raises ``ModelError`` naming the model and what failed."""
    own = shipped_onnx(model)
    if own is not None:
        return OnnxSource(own, "model directory")
    problem = converter_problem()
    if problem:
        raise ModelError(f"{model.model_dir}: has no {ONNX_FILE} and {problem}")
    try:
        key = content_key(model)
    except OSError as exc:
        raise ModelError(f"{model.model_dir}: cannot read the Paddle files to convert them "
                         f"({exc.strerror or exc})") from exc
    entry = cache_root() / key[:32]
    target = entry / ONNX_FILE
    if _looks_like_onnx(target):
        return OnnxSource(target, "cache")
    _raise_known_failure(entry, model)
    timeout = _timeout()
    try:
        with _Lock(cache_root() / "locks" / f"{key[:32]}.lock", timeout + 30,
                   str(model.model_dir)):
            if _looks_like_onnx(target):  # converted by the process we waited for
                return OnnxSource(target, "cache")
            _raise_known_failure(entry, model)
            entry.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".inference.", suffix=".onnx.tmp", dir=entry)
            os.close(fd)
            try:
                try:
                    convert_in_child(model, Path(tmp), timeout)
                except _ConversionFailed as exc:
                    # the same files and tools fail the same way: remembered, so that every
                    # later start does not spend seconds failing again (the key changes when
                    # either does)
                    reason = str(exc).removeprefix(f"{model.model_dir}: ")
                    _publish_bytes(entry / FAILED_FILE, reason.encode())
                    raise ModelError(str(exc)) from None
                os.chmod(tmp, _plain_mode())
                meta = {"source": str(model.model_dir), "graph": model.graph_file.name,
                        "versions": converter_versions(), "key": key}
                _publish_bytes(entry / "source.json", json.dumps(meta, indent=1).encode())
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
    except OSError as exc:
        raise ModelError(f"{model.model_dir}: cannot write the ONNX cache {entry} "
                         f"({exc.strerror or exc}); set {ENV_HOME} to a writable folder"
                         ) from exc
    return OnnxSource(target, "converted")


class _ConversionFailed(Exception):
    """The converter ran and refused the model (as opposed to a time-out or a full disk)."""


def _raise_known_failure(entry: Path, model: ModelSpec) -> None:
    """A conversion of the same bytes with the same tools failed before (in this directory
    or in another copy of the model): say so, naming this model."""
    try:
        text = (entry / FAILED_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return
    raise ModelError(f"{model.model_dir}: {text} (remembered from an earlier try; delete "
                     f"{entry} to try again)")


def conversion_problem(model: ModelSpec) -> str | None:
    """None when ``model`` has an ONNX file or one can be made (converting it now, once), else
    the sentence saying why not: the ONNX engines' ``model_problem``, so that ``auto`` moves
    on to the next engine when the conversion fails."""
    try:
        onnx_for(model)
    except ModelError as exc:
        return str(exc)
    return None


def convert_in_child(model: ModelSpec, out: Path, timeout: float) -> None:
    """Run paddle2onnx on ``model`` in a child interpreter, writing ``out``."""
    env = dict(os.environ)
    env.pop("POLYGRAPHY_AUTOINSTALL_DEPS", None)
    env.setdefault("GLOG_minloglevel", "2")
    cmd = [sys.executable, "-m", "mlcls.backends.onnx_model", str(model.graph_file),
           str(model.params_file), str(out)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"{model.model_dir}: the conversion to ONNX did not finish within "
                         f"{timeout:.0f} s (set {ENV_TIMEOUT} to allow longer)") from exc
    if done.returncode != 0 or not _looks_like_onnx(out):
        raise _ConversionFailed(f"{model.model_dir}: paddle2onnx could not convert the model "
                                f"to ONNX ({_failure_summary(done, model.graph_file.name)})")


def _failure_summary(done: subprocess.CompletedProcess, graph_name: str) -> str:
    lines = [ln.strip() for ln in (done.stderr + "\n" + done.stdout).splitlines()]
    # the child prints its verdict on a line of its own; otherwise the converter's last words
    verdict = [ln.removeprefix("mlcls-convert: ") for ln in lines
               if ln.startswith("mlcls-convert: ")]
    if verdict:
        return verdict[-1]
    useful = [ln for ln in lines if ln and "ccache" not in ln and "warnings.warn" not in ln]
    if useful and "Start parsing the Paddle model file" in useful[-1]:
        # paddle2onnx's C++ parser exits without a word on a graph it cannot read
        return (f"it stopped while parsing {graph_name}, exit status {done.returncode}: the "
                "file is not a Paddle inference graph this converter can read")
    tail = "; ".join(useful[-_MAX_ERROR_LINES:]) or "no message"
    return f"exit status {done.returncode}: {tail}"


# -- export ------------------------------------------------------------------------------------


def export_onnx_dir(model: ModelSpec, target: Path) -> Path:
    """Write ``target``: ``inference.onnx`` and the model's ``inference.yml``, a directory that
    ONNX runtimes on edge devices (and mlcls's ONNX engines, without Paddle) load. Written to
    a scratch folder beside it and renamed into place, so an existing export is only replaced
    by a complete one."""
    import shutil

    from mlcls.results import publish_dir  # Pillow behind it: only when exporting

    source = onnx_for(model)
    target = Path(target).expanduser()
    if target.exists() and not target.is_dir():
        raise ModelError(f"{target}: exists and is not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        shutil.copyfile(source.path, scratch / ONNX_FILE)
        shutil.copyfile(model.model_dir / "inference.yml", scratch / "inference.yml")
        for name in (ONNX_FILE, "inference.yml"):
            os.chmod(scratch / name, _plain_mode())
        os.chmod(scratch, _plain_mode() | 0o111)  # mkdtemp's folder starts private
        publish_dir(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


# -- the child process -------------------------------------------------------------------------


def _fold_constants(raw: bytes, out: Path) -> bool:
    """Constant-fold with ONNX Runtime's basic level and keep the result only when every
    operator in it is a standard ONNX one. Returns whether the folded model was written."""
    try:
        import onnx
        import onnxruntime as ort
    except ImportError:
        return False
    with tempfile.TemporaryDirectory(prefix="mlcls-fold-") as scratch:
        src = Path(scratch) / "plain.onnx"
        folded = Path(scratch) / "folded.onnx"
        src.write_bytes(raw)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(folded)
        try:
            ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
            model = onnx.load(str(folded))
        except Exception:
            return False
        if any(node.domain not in ("", "ai.onnx") for node in model.graph.node):
            return False
        used = {node.domain for node in model.graph.node} | {""}
        keep = [op for op in model.opset_import if op.domain in used or op.domain == "ai.onnx"]
        del model.opset_import[:]
        model.opset_import.extend(keep)
        onnx.checker.check_model(model)
        onnx.save(model, str(out))
    return True


def _child_main(argv: list[str]) -> int:
    graph, params, out = argv
    os.environ.pop("POLYGRAPHY_AUTOINSTALL_DEPS", None)
    import contextlib
    import io
    import warnings

    sink = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with contextlib.redirect_stdout(sink):
                import paddle2onnx
        except Exception as exc:
            print(f"mlcls-convert: paddle2onnx cannot be imported ({type(exc).__name__}: "
                  f"{exc})", file=sys.stderr)
            return 3
    with tempfile.TemporaryDirectory(prefix="mlcls-p2o-") as scratch:
        plain = Path(scratch) / "plain.onnx"
        try:
            # optimize_tool=None: the polygraphy optimiser would pip-install packages
            with contextlib.redirect_stdout(sink):
                paddle2onnx.export(graph, params, str(plain), opset_version=OPSET,
                                   enable_onnx_checker=True, optimize_tool=None)
        except Exception as exc:
            # paddle2onnx logs the real cause and then fails on its own unset result
            cause = [ln for ln in sink.getvalue().splitlines() if "Failed to convert" in ln]
            detail = cause[-1].strip() if cause else f"{type(exc).__name__}: {exc}"
            print(f"mlcls-convert: {detail}", file=sys.stderr)
            return 4
        if not plain.is_file() or plain.stat().st_size == 0:
            print("mlcls-convert: paddle2onnx wrote no model", file=sys.stderr)
            return 4
        raw = plain.read_bytes()
    if not _fold_constants(raw, Path(out)):
        Path(out).write_bytes(raw)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
