"""A predictor on Paddle Inference, shared by every engine that runs Paddle (the built-in
``paddle`` engine, and plugins such as the example ``sim`` engine).

Each engine passes a ``configure`` callback that sets its device on the ``paddle.inference
.Config``; everything else (loading, I/O handles, placement read-back) is the same for all.
Paddle is imported here, lazily, so that ``import mlcls`` stays fast.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import ModelError
from .model import ModelSpec
from .plugin import Placement, Predictor

_import_lock = threading.Lock()


def import_paddle_inference():
    """Import ``paddle.inference`` quietly (no glog chatter, no build-tool warnings)."""
    with _import_lock:
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("FLAGS_call_stack_level", "1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import paddle.inference as paddle_infer
    return paddle_infer


def base_config(model: ModelSpec) -> Any:
    """A ``paddle.inference.Config`` for ``model`` with the settings every device shares."""
    paddle_infer = import_paddle_inference()
    config = paddle_infer.Config(str(model.graph_file), str(model.params_file))
    config.disable_glog_info()
    config.enable_memory_optim()
    if model.graph_file.suffix == ".json":
        config.enable_new_ir(True)
        config.enable_new_executor(True)
        config.set_optimization_level(3)
    return config


class PaddlePredictor(Predictor):
    """One Paddle Inference predictor; ``placement_of`` reads its real device from the config."""

    def __init__(self, model: ModelSpec, configure: Callable[[Any], None],
                 placement_of: Callable[[Any], Placement]):
        paddle_infer = import_paddle_inference()
        self.config = base_config(model)
        configure(self.config)
        try:
            self._predictor = paddle_infer.create_predictor(self.config)
        except Exception as exc:
            raise ModelError(f"{model.model_dir}: Paddle Inference could not load the model "
                             f"({type(exc).__name__}: {str(exc).strip().splitlines()[-1]})"
                             ) from exc
        self._placement_of = placement_of
        inputs = self._predictor.get_input_names()
        outputs = self._predictor.get_output_names()
        if len(inputs) != 1 or not outputs:
            raise ModelError(f"{model.model_dir}: expected one image input and a score output, "
                             f"found inputs {inputs} and outputs {outputs}")
        self._input = self._predictor.get_input_handle(inputs[0])
        self._output = self._predictor.get_output_handle(outputs[0])
        self._lock = threading.Lock()  # a Paddle predictor is not re-entrant

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            self._input.reshape(list(batch.shape))
            self._input.copy_from_cpu(batch)
            self._predictor.run()
            scores = self._output.copy_to_cpu()
        return scores.reshape(batch.shape[0], -1)

    def placement(self) -> Placement:
        return self._placement_of(self.config)
