"""Answers every probe "yes" (its engine for every device type, its backend about the cpu),
claims the cpu's names as aliases, and raises in every other call, including the fallback
listener."""

from mlcls.plugin import DeviceBackend, Engine, ProbeReport, hookimpl


def _boom(what):
    raise RuntimeError(f"rogue {what} exploded")


class RogueBackend(DeviceBackend):
    name = "rogue"
    aliases = ("cpu", "host", "rogue-device")  # two of them name the cpu

    def probe(self):
        return ProbeReport("cpu", True, count=64)  # claims the cpu

    def environment(self, options):
        _boom("environment")

    def framework_device(self, device_id):
        _boom("framework_device")


class RogueEngine(Engine):
    name = "rogue"

    def probe(self, device_type):
        return ProbeReport(device_type, True, count=64)  # "runs" everywhere

    def model_problem(self, model):
        _boom("model_problem")

    def environment(self, device_type, options):
        _boom("engine environment")

    def create_predictor(self, model, device, device_id, options):
        _boom("create_predictor")

    def placement(self, predictor):
        _boom("placement")

    def create_preprocessor(self, model, device):
        _boom("create_preprocessor")


@hookimpl
def register_device_backends(register):
    register(RogueBackend())


@hookimpl
def register_engines(register):
    register(RogueEngine())


@hookimpl
def on_fallback(requested, used, reason):
    _boom("on_fallback")
