"""Paddle's own chatter (glog's ``W1203 ...`` lines, the Python warnings its modules raise at
import and while training) stays out of ``mlcls train``, ``mlcls export`` and ``mlcls dataset
check``, run as a user runs them; mlcls's own lines stay, and ``--verbose`` lets Paddle's
through."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

from mldataset import make_dataset

from mlcls.cli.quiet import paddle_quiet

MLCLS = str(Path(sys.executable).parent / "mlcls")
GLOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")


def paddle_noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if GLOG_LINE.match(line) or "Warning" in line or "warnings.warn" in line
            or "site-packages/paddle/" in line or "oneDNN" in line]


def run(*args, cwd):
    # a user's shell: none of the variables that Paddle's import in this process may have set
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GLOG_", "FLAGS_")) and k != "PYTHONWARNINGS"}
    return subprocess.run([MLCLS, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_train_export_and_dataset_check_print_no_paddle_lines(tmp_path):
    data = make_dataset(tmp_path / "ds", n_train=8, n_val=4)
    checked = run("dataset", "check", data, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "OK: 0 error(s)" in checked.stdout and checked.stderr == ""

    trained = run("train", "--dataset", data, "--output", tmp_path / "out", "--model",
                  "PP-LCNet_x0_25_ML", "--device", "cpu", "--image_size", "32", "--batch_size",
                  "8", "--epochs", "1", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert not paddle_noise(trained.stderr), trained.stderr
    assert "mlcls train: PP-LCNet_x0_25_ML on cpu" in trained.stderr
    assert "epoch 1/1: loss" in trained.stderr

    exported = run("export", "--checkpoint", tmp_path / "out" / "epoch_1", "--output",
                   tmp_path / "model", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert not paddle_noise(exported.stderr), exported.stderr
    assert exported.stdout.startswith("exported ")

    # real errors still show, as mlcls's one line
    missing = run("export", "--checkpoint", tmp_path / "none", "--output", tmp_path / "x",
                  cwd=tmp_path)
    assert missing.returncode == 2 and "checkpoint weights not found" in missing.stderr


def test_quiet_hides_only_paddles_warnings_and_verbose_shows_them(monkeypatch):
    monkeypatch.delenv("GLOG_minloglevel", raising=False)

    def warn(module: str) -> None:
        warnings.warn_explicit("chatter", UserWarning, f"{module}.py", 1, module=module)

    for verbose, shown in ((False, ["mlcls.training", "paddlex"]),
                           (True, ["paddle.nn.layer.norm", "paddle", "mlcls.training",
                                   "paddlex"])):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with paddle_quiet(verbose):
                for module in ("paddle.nn.layer.norm", "paddle", "mlcls.training", "paddlex"):
                    warn(module)
        assert [Path(w.filename).stem for w in caught] == shown
        assert os.environ["GLOG_minloglevel"] == ("0" if verbose else "2")
        monkeypatch.delenv("GLOG_minloglevel")
    monkeypatch.setenv("GLOG_minloglevel", "1")  # the user's own level is kept
    with paddle_quiet(False):
        assert os.environ["GLOG_minloglevel"] == "1"
