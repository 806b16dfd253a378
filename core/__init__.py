"""mlcls: multi-label image classification on any hardware.

    from mlcls import create_pipeline
    pipeline = create_pipeline("multi_label_image_classification", device="cpu",
                               model_dir="path/to/model")
    for res in pipeline.predict("image.jpg"):
        res.print()
"""

from __future__ import annotations

from .plugin import hookimpl

__version__ = "0.1.0"
__all__ = ["create_pipeline", "hookimpl", "__version__"]


def __getattr__(name: str):
    # Lazy, so that a backend plugin importing `hookimpl` does not pull in the pipeline
    # (and its OpenCV/Pillow imports) at registration time.
    if name == "create_pipeline":
        from .pipeline import create_pipeline

        return create_pipeline
    raise AttributeError(f"module 'mlcls' has no attribute {name!r}")
