"""Regression tests for the faults one plugin used to cause in another's device, with real
pip-installed plugins (tests/sample_plugins/faulty_dist): one that answers every probe "yes"
and raises in every other call, one with a misspelt hook, one that registers ``cpu`` (and
``paddle``) again, and one whose probes hang. With each: ``mlcls devices`` shows the cpu
available, a cpu run gives PaddleX's reference scores, and ``mlcls plugins`` names the plugin
and its fault."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlcls.catalogue import load_catalogue

DIST = Path(__file__).resolve().parent / "sample_plugins" / "faulty_dist"
FAULTY = ("rogue", "misspelt", "cpuclash", "hang")
IMAGES = 3  # of the reference set: enough to compare scores, cheap to run
BUILT_IN_ENGINES = ("paddle", "onnxruntime", "openvino")


@pytest.fixture(scope="module")
def faulty_site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faulty")
    source = root / "src"
    shutil.copytree(DIST, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = root / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--no-input", "--target", str(site),
                           str(source)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return site


def env_with(site: Path, only: str, **extra: str) -> dict[str, str]:
    """The installed faulty plugins on the path, all but ``only`` blocked."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLCLS_LOAD_PLUGINS", "MLCLS_BLOCK_PLUGINS", "MLCLS_FALLBACK",
                        "MLCLS_DEVICES_YAML")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    env["MLCLS_BLOCK_PLUGINS"] = ",".join(n for n in FAULTY if n != only)
    env.update(extra)
    return env


def mlcls(args: list[str], env: dict[str, str], timeout: float = 180):
    return subprocess.run([sys.executable, "-m", "mlcls.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def reference(reference_dir):
    order = (reference_dir / "expected" / "raw_scores_order.txt").read_text().split()[:IMAGES]
    raw = np.load(reference_dir / "expected" / "raw_scores.npy")[:IMAGES]
    paths = [str(reference_dir / "images" / name) for name in order]
    return reference_dir / "model" / "PP-LCNet_x1_0_ML", paths, raw


def printed_results(stdout: str) -> list[dict]:
    decoder = json.JSONDecoder()
    found, pos = [], 0
    while (start := stdout.find("{", pos)) >= 0:
        obj, pos = decoder.raw_decode(stdout, start)
        found.append(obj["res"])
    return found


def cpu_run_matches_the_reference(env, reference, *more: str) -> subprocess.CompletedProcess:
    model, paths, raw = reference
    done = mlcls(["--pipeline", "multi_label_image_classification", "--input", *paths,
                  "--model_dir", str(model), "--threshold", "0", *more], env)
    assert done.returncode == 0, done.stderr
    results = printed_results(done.stdout)
    assert [r["input_path"] for r in results] == paths
    got = np.zeros_like(raw)
    for i, res in enumerate(results):
        got[i, res["class_ids"]] = res["scores"]
        # whichever built-in engine devices.yaml puts first for the cpu, never a faulty one
        assert res["device"] == "cpu" and res["engine"] in BUILT_IN_ENGINES
    assert np.abs(got - raw).max() < 1e-4
    return done


def devices_json(env) -> dict:
    done = mlcls(["devices", "--json"], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def plugin_row(env, name: str) -> dict:
    done = mlcls(["plugins", "--json"], env)
    assert done.returncode == 0, done.stderr
    return {r["name"]: r for r in json.loads(done.stdout)}[name]


def cpu_row(data: dict) -> dict:
    cpu = {r["type"]: r for r in data["types"]}["cpu"]
    assert cpu["available"] and cpu["plugin"] == "cpu"
    paddle = next(e for e in cpu["engines"] if e["engine"] == "paddle")
    assert paddle["available"] and paddle["plugin"] == "cpu"
    return cpu


def test_a_plugin_answering_yes_everywhere_and_raising_elsewhere(faulty_site, reference):
    env = env_with(faulty_site, "rogue")
    data = devices_json(env)
    cpu = cpu_row(data)
    assert "rogue" not in cpu["engine_order"]  # auto takes devices.yaml's order, not "yes"
    faults = {f["plugin"]: f for f in data["plugin_faults"]}
    assert any("answered for 'cpu'" in t for t in faults["rogue"]["faults"])
    assert any("alias 'host' of 'rogue' refused: it names 'cpu'" in t
               for t in faults["rogue"]["faults"])
    cpu_run_matches_the_reference(env, reference, "--device", "cpu")
    cpu_run_matches_the_reference(env, reference, "--device", "host")
    record = plugin_row(env, "rogue")
    assert record["status"] == "loaded"
    assert ("environment of 'rogue' raised RuntimeError: rogue environment exploded"
            in record["faults"])
    table = mlcls(["plugins"], env).stdout
    assert "rogue: fault: environment of 'rogue' raised RuntimeError" in table
    # asked for by name, its predictor creation fails with its name and no traceback
    model, paths, _ = reference
    done = mlcls(["--pipeline", "multi_label_image_classification", "--input", paths[0],
                  "--model_dir", str(model), "--device", "cpu", "--engine", "rogue"], env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "plugin 'rogue'" in done.stderr and "model_problem" in done.stderr
    # its fallback listener raises; the fallback still happens, with one warning for it
    done = cpu_run_matches_the_reference(env, reference, "--device", "gpu", "--fallback")
    assert "gpu -> cpu" in done.stderr and "on_fallback raised RuntimeError" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_misspelt_hook_is_rejected_and_recorded(faulty_site, reference):
    env = env_with(faulty_site, "misspelt")
    data = devices_json(env)
    cpu_row(data)
    assert "typo" not in {r["type"] for r in data["types"]}
    faults = {f["plugin"]: f for f in data["plugin_faults"]}
    assert "register_device_backend" in faults["misspelt"]["error"]
    cpu_run_matches_the_reference(env, reference, "--device", "cpu")
    record = plugin_row(env, "misspelt")
    assert record["status"] == "failed" and record["distribution"] == "mlcls-faulty-plugins"
    assert "'register_device_backend' which mlcls does not define" in record["error"]
    assert "register_device_backends" in record["error"]  # the hooks it could have meant


def test_a_second_cpu_and_paddle_are_refused(faulty_site, reference):
    env = env_with(faulty_site, "cpuclash")
    data = devices_json(env)
    cpu = cpu_row(data)
    assert "impostor" not in json.dumps(cpu)
    cpu_run_matches_the_reference(env, reference, "--device", "cpu")
    done = cpu_run_matches_the_reference(env, reference, "--device", "cpu", "--engine", "paddle")
    assert {r["engine"] for r in printed_results(done.stdout)} == {"paddle"}
    record = plugin_row(env, "cpuclash")
    assert record["device_types"] == [] and record["engines"] == []
    assert "device type 'cpu' is already registered by plugin 'cpu'; refused" in \
        record["faults"]
    assert "engine 'paddle' is already registered by plugin 'cpu'; refused" in record["faults"]


def test_a_hanging_probe_is_cut_off_and_reported(faulty_site, reference, tmp_path):
    data = yaml.safe_load(Path(load_catalogue().source).read_text())
    data["probe_timeout_s"] = 1.5
    catalogue = tmp_path / "devices.yaml"
    catalogue.write_text(yaml.safe_dump(data))
    env = env_with(faulty_site, "hang", MLCLS_DEVICES_YAML=str(catalogue))
    done = mlcls(["devices", "--json"], env, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = {r["type"]: r for r in json.loads(done.stdout)["types"]}
    cpu_row(json.loads(done.stdout))
    assert not rows["hang"]["available"]
    assert "plugin 'hang': probe of device type 'hang' did not answer within 1.5 s" in \
        rows["hang"]["reason"]
    hung_engine = next(e for e in rows["cpu"]["engines"] if e["engine"] == "hang")
    assert not hung_engine["available"] and "cut off" in hung_engine["reason"]
    # auto (hang is not in the priority list) and an explicit cpu run are unaffected
    cpu_run_matches_the_reference(env, reference, "--device", "auto")
    done = mlcls(["--pipeline", "multi_label_image_classification", "--input",
                  reference[1][0], "--model_dir", str(reference[0]), "--device", "hang"],
                 env, timeout=60)
    assert done.returncode == 1 and "did not answer within 1.5 s" in done.stderr
    assert "Traceback" not in done.stderr
    record = plugin_row(env, "hang")
    assert any("did not answer within 1.5 s and was cut off" in f for f in record["faults"])
