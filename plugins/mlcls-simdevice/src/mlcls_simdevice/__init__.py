"""mlcls-simdevice: a simulated accelerator type, ``sim``, that runs on the host CPU."""

__version__ = "0.1.0"
