"""devices.yaml is one file at the repo root and must reach the package in both editable and
wheel installs (core/devices.yaml is a symlink to it, copied into wheels)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT_YAML = (REPO / "devices.yaml").read_bytes()


def test_editable_install_reads_the_root_devices_yaml():
    from mlcls.catalogue import load_catalogue

    assert (resources.files("mlcls") / "devices.yaml").read_bytes() == ROOT_YAML
    assert load_catalogue().priority[-1] == "cpu"


def test_wheel_carries_devices_yaml_and_the_font(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "devices.yaml"):
        shutil.copy(REPO / name, src / name)
    for name in ("core", "backends"):
        shutil.copytree(REPO / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("mlcls-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert zf.read("mlcls/devices.yaml") == ROOT_YAML
        assert {"mlcls/assets/DejaVuSans.ttf", "mlcls/backends/cpu.py"} <= names
        cli = {f"mlcls/cli/{p.name}" for p in (REPO / "core" / "cli").glob("*.py")}
        assert {"mlcls/cli/__init__.py", "mlcls/cli/__main__.py", "mlcls/cli/table.py"} <= cli
        assert cli <= names, cli - names
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "cpu = mlcls.backends.cpu" in zf.read(entry_points).decode()
        site = tmp_path / "site"
        zf.extractall(site)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from mlcls.catalogue import load_catalogue; c = load_catalogue(); "
            "print(c.source); print(','.join(c.priority))")
    out = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0].startswith(str(site)) and out[1].endswith("cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fresh_venv_with_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of what git would commit, then install it (not editable)
    into a new venv. Its dependencies come from this venv through a path file, so the test
    stays offline; mlcls itself can only come from the wheel (the editable finder is not
    carried over)."""
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], cwd=REPO, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for rel in filter(None, tracked):
        if rel.startswith(("core/", "backends/")) or rel in (
                "pyproject.toml", "setup.py", "README.md", "devices.yaml"):
            target = src / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / rel).is_symlink():
                target.symlink_to(os.readlink(REPO / rel))
            else:
                shutil.copy2(REPO / rel, target)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("mlcls-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = (venv / "lib").glob("python*/site-packages")
    deps = [p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir()]
    (site / "zz_project_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return venv


def test_installed_wheel_runs_help_the_demo_and_the_server(tmp_path):
    """What `pip install mlcls` gives a user, run from a folder outside the checkout."""
    venv = _fresh_venv_with_wheel(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLCLS_DEVICES_YAML")}
    mlcls = str(venv / "bin" / "mlcls")
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import mlcls, mlcls.serving, mlcls.training; print(mlcls.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(venv)), where.stdout

    helped = subprocess.run([mlcls, "--help"], cwd=work, env=env, capture_output=True,
                            text=True, timeout=120)
    assert helped.returncode == 0 and "--pipeline" in helped.stdout, helped.stderr
    helped = subprocess.run([str(venv / "bin" / "python"), "-m", "mlcls.cli", "dataset", "split",
                             "--help"], cwd=work, env=env, capture_output=True, text=True,
                            timeout=120)
    assert helped.returncode == 0 and "(default: 0)" in helped.stdout, helped.stderr

    # README's first command, with the demo image the wheel ships
    demo = Path(where.stdout.strip()).parent / "assets" / "demo.png"
    ran = subprocess.run([mlcls, "--pipeline", "multi_label_image_classification", "--input",
                          str(demo), "--model", "mlcls-demo", "--device", "cpu",
                          "--save_path", "output"], cwd=work, env=env, capture_output=True,
                         text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    saved = json.loads((work / "output" / "demo_res.json").read_text())
    assert set(saved["label_names"]) == {"six", "seven"}

    port = _free_port()
    server = subprocess.Popen([mlcls, "--serve", "--pipeline", "multi_label_image_classification",
                               "--model", "mlcls-demo", "--device", "cpu", "--port", str(port)],
                              cwd=work, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        answered = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    answered = r.status
                    break
            except OSError:
                time.sleep(0.3)
        assert answered == 200, (server.poll(), server.stdout.read() if server.poll() else "")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
