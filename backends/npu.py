"""The Ascend NPU backend: the driver's ``/dev/davinci*`` nodes, counted after
``ASCEND_RT_VISIBLE_DEVICES``; Paddle runs on it through the CustomDevice plugin
``paddle-custom-npu`` (on the CANN toolkit)."""

from __future__ import annotations

from .custom_device import CustomDevicePlugin, CustomDeviceSpec

SPEC = CustomDeviceSpec(
    type="npu", distribution="paddle-custom-npu", vendor="Ascend", toolkit="CANN toolkit",
    smi="npu-smi", nodes="/dev/davinci[0-9]*", visible_env="ASCEND_RT_VISIBLE_DEVICES",
    version_files=(
        # ASCEND_TOOLKIT_HOME is exported by the toolkit's set_env.sh
        ("cann", "$ASCEND_TOOLKIT_HOME/{arch}-linux/ascend_toolkit_install.info"),
        ("ascend_driver", "/usr/local/Ascend/driver/version.info"),
    ))

plugin = CustomDevicePlugin(SPEC, "Ascend NPU")
