"""The Cambricon MLU backend: Paddle's CustomDevice plugin ``paddle-custom-mlu`` (on the Neuware
SDK). Ids are counted after ``MLU_VISIBLE_DEVICES``."""

from __future__ import annotations

from .custom_device import CustomDevicePlugin, CustomDeviceSpec

SPEC = CustomDeviceSpec(type="mlu", distribution="paddle-custom-mlu", vendor="Cambricon",
                        toolkit="Neuware SDK (CNToolkit)", smi="cnmon")

plugin = CustomDevicePlugin(SPEC, "Cambricon MLU through the paddle-custom-mlu plugin")
