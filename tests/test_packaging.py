"""devices.yaml is one file at the repo root and must reach the package in both editable and
wheel installs (core/devices.yaml is a symlink to it, copied into wheels)."""

from __future__ import annotations

import shutil
import subprocess
import sys
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
    for name in ("pyproject.toml", "README.md", "devices.yaml"):
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
