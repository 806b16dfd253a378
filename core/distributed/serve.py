"""The HTTP service of ``mlcls --serve`` as a Ray Serve deployment.

Each replica builds its own pipeline and serves the very FastAPI app ``mlcls --serve`` serves
(``mlcls.serving.create_app``): the same routes, schema, limits, dynamic batching and errors.
Ray Serve adds what one host lacks: replicas over a cluster, each with its device asked of Ray
(``num_gpus`` per replica for ``gpu``), behind Serve's own HTTP proxy.

Two ways to start it:

- ``mlcls serve-ray --pipeline multi_label_image_classification --model_dir DIR ...``;
- ``serve run mlcls.distributed.serve:build_app model_dir=DIR device=cpu num_replicas=2``
  (Ray's own CLI; every argument is a ``key=value`` of ``build_app``).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ray import serve

from ..errors import UsageError
from ..serving.settings import ServeSettings
from .batch import BatchSettings, plan_workers

DEPLOYMENT_NAME = "mlcls"


@serve.ingress()  # no app yet: each replica builds it around its own pipeline
class MlclsService:
    """One replica: a pipeline, and ``mlcls --serve``'s app over it."""

    def __init__(self, pipeline_args: dict[str, Any], settings: ServeSettings):
        from .. import create_pipeline

        self._pipeline = create_pipeline(**pipeline_args)
        self._settings = settings

    def __serve_build_asgi_app__(self):
        from ..serving import create_app

        return create_app(self._pipeline, self._settings)

    def __del__(self) -> None:
        pipeline = getattr(self, "_pipeline", None)
        if pipeline is not None:
            pipeline.close()


def mlcls_app(settings: BatchSettings, serve_settings: ServeSettings | None = None, *,
              num_replicas: int = 1, cluster: dict[str, float] | None = None):
    """The Serve application (``serve.run`` it). ``settings.device`` maps onto each replica's
    Ray resources as in ``mlcls batch``: ``gpu`` gives every replica one GPU of its own."""
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
        raise UsageError(f"num_replicas must be a whole number >= 1, got {num_replicas!r}")
    if cluster is None:
        import ray

        cluster = ray.cluster_resources() if ray.is_initialized() else None
    plan = plan_workers(settings.device, cluster, None)  # one device per replica
    actor: dict[str, Any] = {"num_cpus": plan.num_cpus}
    if plan.num_gpus:
        actor["num_gpus"] = plan.num_gpus
    if plan.resources:
        actor["resources"] = plan.resources
    deployment = serve.deployment(MlclsService, name=DEPLOYMENT_NAME,
                                  num_replicas=num_replicas, ray_actor_options=actor)
    return deployment.bind(settings.pipeline_kwargs(plan.device),
                           serve_settings or ServeSettings())


_SERVE_FIELDS = {f.name for f in fields(ServeSettings)} - {"host", "port", "log_level"}
_PIPELINE_FIELDS = {"pipeline", "model", "model_dir", "device", "engine", "batch_size",
                    "threshold", "fallback"}


def build_app(args: dict[str, str]):
    """``serve run mlcls.distributed.serve:build_app key=value ...``: the pipeline's settings
    (``model_dir``, ``device``, ...), ``num_replicas`` and the serving limits
    (``max_batch_size``, ``max_queue``, ...) by the names ``mlcls --serve`` uses."""
    import yaml

    unknown = set(args) - _SERVE_FIELDS - _PIPELINE_FIELDS - {"num_replicas"}
    if unknown:
        raise UsageError(f"unknown argument(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(sorted(_PIPELINE_FIELDS | _SERVE_FIELDS))}, "
                         "num_replicas")

    def value(text: Any) -> Any:
        # `serve run` hands over strings: read numbers, booleans and lists as YAML does.
        return yaml.safe_load(text) if isinstance(text, str) else text

    pipeline = {k: value(v) for k, v in args.items() if k in _PIPELINE_FIELDS}
    for key in ("pipeline", "model", "model_dir", "device", "engine"):
        if pipeline.get(key) is not None:
            pipeline[key] = str(args[key])
    serving = {k: value(v) for k, v in args.items() if k in _SERVE_FIELDS}
    replicas = value(args.get("num_replicas", 1))
    return mlcls_app(BatchSettings(**pipeline), ServeSettings(**serving),
                     num_replicas=replicas)
