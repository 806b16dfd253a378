"""The Cambricon MLU backend: the driver's ``/dev/cambricon_dev*`` nodes, counted after
``MLU_VISIBLE_DEVICES``; Paddle runs on it through the CustomDevice plugin ``paddle-custom-mlu``
(on the Neuware SDK)."""

from __future__ import annotations

from .custom_device import CustomDevicePlugin, CustomDeviceSpec

SPEC = CustomDeviceSpec(type="mlu", distribution="paddle-custom-mlu", vendor="Cambricon",
                        toolkit="Neuware SDK (CNToolkit)", smi="cnmon",
                        nodes="/dev/cambricon_dev[0-9]*", visible_env="MLU_VISIBLE_DEVICES")

plugin = CustomDevicePlugin(SPEC, "Cambricon MLU")
