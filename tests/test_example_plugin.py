"""The example plugin (plugins/mlcls-simdevice), installed with a real ``pip install`` into a
throwaway target folder and driven through the ``mlcls`` command: strict, fallback, auto,
several ids, a predictor that fails to build, an engine that runs somewhere else; then its own
tests and the conformance kit, run by pytest as a vendor would run them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mlcls.catalogue import load_catalogue

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "plugins" / "mlcls-simdevice"
SIM_VARS = ("MLCLS_SIM_COUNT", "MLCLS_SIM_VISIBLE_DEVICES", "MLCLS_SIM_FAIL", "MLCLS_SIM_TRACE",
            "MLCLS_FALLBACK", "MLCLS_DEVICES_YAML", "MLCLS_LOAD_PLUGINS", "MLCLS_BLOCK_PLUGINS")


@pytest.fixture(scope="session")
def sim_site(tmp_path_factory) -> Path:
    """The plugin pip-installed into its own folder (the project venv is left untouched)."""
    root = tmp_path_factory.mktemp("simdevice")
    source = root / "src"
    # build from a copy, so that no build/ or egg-info lands in the repository
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = root / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--no-input", "--target", str(site),
                           str(source)], capture_output=True, text=True, timeout=300,
                          check=False)
    # --no-build-isolation builds with this venv's setuptools and wheel (the dev extra)
    assert done.returncode == 0, ("pip install of the example plugin failed (is the dev extra "
                                  "installed?)\n" + done.stdout + done.stderr)
    assert (site / "mlcls_simdevice" / "backend.py").is_file()
    return site


def sim_env(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SIM_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def mlcls(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlcls.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)


def printed_results(stdout: str) -> list[dict]:
    """The results ``mlcls`` printed, in print order."""
    decoder = json.JSONDecoder()
    found, pos = [], 0
    while True:
        start = stdout.find("{", pos)
        if start < 0:
            return found
        obj, pos = decoder.raw_decode(stdout, start)
        found.append(obj["res"])


def predict(site, model, images, device, *more, **env):
    return mlcls(["--pipeline", "multi_label_image_classification", "--input", str(images),
                  "--model_dir", str(model), "--device", device, *more], sim_env(site, **env))


def test_plugin_is_listed_and_probed(sim_site):
    env = sim_env(sim_site, MLCLS_SIM_COUNT="3")
    plugins = {r["name"]: r for r in json.loads(mlcls(["plugins", "--json"], env).stdout)}
    assert plugins["sim"]["status"] == "loaded"
    assert plugins["sim"]["distribution"] == "mlcls-simdevice"
    done = mlcls(["devices", "--json"], env)
    sim = {r["type"]: r for r in json.loads(done.stdout)["types"]}["sim"]
    assert sim["available"] and sim["count"] == 3 and sim["plugin"] == "sim"
    assert sim["fallback"] == ["cpu"] and sim["aliases"] == ["simdevice"]


def test_multi_id_results_in_input_order_each_naming_its_device(sim_site, tiny_model,
                                                                image_dir, tmp_path):
    trace = tmp_path / "trace.txt"
    out = tmp_path / "out"
    done = predict(sim_site, tiny_model, image_dir, "SIM:0,1", "--batch_size", "1",
                   "--save_path", str(out), MLCLS_SIM_TRACE=str(trace))
    assert done.returncode == 0, done.stderr
    results = printed_results(done.stdout)
    expected = sorted(str(p) for p in image_dir.iterdir())
    assert [r["input_path"] for r in results] == expected
    devices = Counter(r["device"] for r in results)
    assert set(devices) == {"sim:0", "sim:1"}
    ran = Counter()
    for line in trace.read_text().splitlines():
        dev, n = line.split()
        ran[dev] += int(n)
    # the device each result names is the one that ran it (beyond that, at most the one blank
    # image the pipeline runs at load to check the label count)
    assert not devices - ran and sum((ran - devices).values()) <= 1
    saved = {json.loads(p.read_text())["input_path"]: json.loads(p.read_text())["device"]
             for p in out.glob("*_res.json")}
    assert saved == {r["input_path"]: r["device"] for r in results}
    assert "classified on sim:0,1" in done.stderr


def test_unavailable_is_strict_by_default(sim_site, tiny_model, image_dir):
    done = predict(sim_site, tiny_model, image_dir, "sim:0", MLCLS_SIM_FAIL="unavailable")
    assert done.returncode == 1
    assert "cannot use device 'sim:0'" in done.stderr and "simulated driver is down" in \
        done.stderr
    assert "--fallback" in done.stderr and not printed_results(done.stdout)


def test_fallback_flag_and_env_take_cpu_with_a_warning(sim_site, tiny_model, image_dir):
    for how in (["--fallback"], []):
        extra = {} if how else {"MLCLS_FALLBACK": "1"}
        done = predict(sim_site, tiny_model, image_dir, "sim:1", *how,
                       MLCLS_SIM_FAIL="unavailable", **extra)
        assert done.returncode == 0, done.stderr
        warnings = [ln for ln in done.stderr.splitlines() if "WARNING" in ln]
        assert len(warnings) == 1 and "sim:1 -> cpu" in warnings[0]
        assert "simulated driver is down" in warnings[0]
        assert {r["device"] for r in printed_results(done.stdout)} == {"cpu"}


def test_id_beyond_the_count_names_the_visible_ids(sim_site, tiny_model, image_dir):
    done = predict(sim_site, tiny_model, image_dir, "sim:2", MLCLS_SIM_COUNT="3",
                   MLCLS_SIM_VISIBLE_DEVICES="2,0")
    assert done.returncode == 1
    assert "sim id 2 does not exist: 2 sim device(s) visible, ids 0-1" in done.stderr


def test_predictor_crash_on_one_id_is_a_clear_error(sim_site, tiny_model, image_dir):
    done = predict(sim_site, tiny_model, image_dir, "sim:0,1", MLCLS_SIM_FAIL="create:1")
    assert done.returncode == 1
    assert "sim:1" in done.stderr and "refused to build the predictor" in done.stderr
    assert "Traceback" not in done.stderr


def test_wrong_placement_is_an_error_or_a_recorded_fallback(sim_site, tiny_model, image_dir):
    done = predict(sim_site, tiny_model, image_dir, "sim:0,1", MLCLS_SIM_FAIL="placement:1")
    assert done.returncode == 1
    assert "engine 'sim' runs on cpu although sim:1 was asked" in done.stderr
    done = predict(sim_site, tiny_model, image_dir, "sim:0,1", "--fallback", "--batch_size",
                   "1", MLCLS_SIM_FAIL="placement:1")
    assert done.returncode == 0, done.stderr
    assert any("WARNING" in ln and "sim:1 -> cpu" in ln for ln in done.stderr.splitlines())
    assert {r["device"] for r in printed_results(done.stdout)} == {"sim:0", "cpu"}


def test_auto_walks_the_priority_list(sim_site, tiny_model, image_dir, tmp_path):
    data = yaml.safe_load(Path(load_catalogue().source).read_text())
    data["priority"] = ["sim", *data["priority"]]
    data["types"]["sim"] = {"description": "the example plugin", "fallback": ["cpu"]}
    catalogue = tmp_path / "devices.yaml"
    catalogue.write_text(yaml.safe_dump(data))
    done = predict(sim_site, tiny_model, image_dir, "auto", MLCLS_DEVICES_YAML=str(catalogue))
    assert done.returncode == 0, done.stderr
    assert {r["device"] for r in printed_results(done.stdout)} == {"sim:0"}
    done = predict(sim_site, tiny_model, image_dir, "auto", MLCLS_DEVICES_YAML=str(catalogue),
                   MLCLS_SIM_FAIL="unavailable")
    assert done.returncode == 0, done.stderr
    assert {r["device"] for r in printed_results(done.stdout)} == {"cpu"}
    assert "WARNING" not in done.stderr  # auto choosing is not a fallback


def test_plugin_tests_and_conformance_kit_pass(sim_site):
    # The plugin's own suite (which includes BackendConformance), then the kit in its
    # no-code form, both as a vendor would run them.
    env = sim_env(sim_site)
    own = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-rs", str(PLUGIN / "tests")], capture_output=True, text=True,
                         env=env, cwd=PLUGIN, timeout=600, check=False)
    assert own.returncode == 0, own.stdout[-3000:] + own.stderr[-2000:]
    assert "skipped" not in own.stdout.splitlines()[-1], own.stdout[-2000:]
    kit = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-p", "mlcls.testing", "--mlcls-device", "sim", "--pyargs",
                          "mlcls.testing"], capture_output=True, text=True, env=env,
                         cwd=sim_site, timeout=600, check=False)
    assert kit.returncode == 0, kit.stdout[-3000:] + kit.stderr[-2000:]
    assert "8 passed" in kit.stdout.splitlines()[-1], kit.stdout[-2000:]
