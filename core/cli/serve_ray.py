"""``mlcls serve-ray``: ``mlcls --serve``'s HTTP service on Ray Serve, with replicas.

    mlcls serve-ray --pipeline NAME|YAML --model_dir DIR [--device D] [--num_replicas N]
                    [--host H] [--port P] [--address ADDR] [serving limits as --serve]

Runs until Ctrl-C, then takes the deployment down. Needs the ``ray`` extra.
"""

from __future__ import annotations

import sys
import time

from .arguments import ArgumentParser, new_parser, positive, threshold


def build_parser() -> ArgumentParser:
    from ..serving.settings import add_serve_arguments

    # "resolve": our --host/--port (Serve's proxy, port 8000) replace those of --serve's
    # flags wherever those are declared.
    p = new_parser("mlcls serve-ray", "Serve the pipeline over HTTP on Ray Serve: the routes, "
                   "schema and limits of mlcls --serve, in as many replicas as asked.",
                   conflict_handler="resolve")
    p.add_argument("--pipeline", required=True,
                   help="multi_label_image_classification, or a pipeline YAML")
    p.add_argument("--model", help="official model name, or a model directory")
    p.add_argument("--model_dir", help="PaddleX inference-model directory (on every node)")
    p.add_argument("--device", help="cpu, gpu, npu, xpu, mlu or auto (one device per replica)")
    p.add_argument("--engine", help="inference engine (auto or a name), where supported")
    p.add_argument("--fallback", action="store_true", default=None,
                   help="if the device cannot be used, take its fallback (devices.yaml)")
    p.add_argument("--threshold", type=threshold,
                   help="default score threshold in [0, 1] (requests may give their own)")
    p.add_argument("--num_replicas", type=positive, default=1, help="replicas")
    p.add_argument("--address", help="Ray cluster to run on (default: start Ray here)")
    add_serve_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address of Serve's HTTP proxy")
    p.add_argument("--port", type=int, default=8000, help="port of Serve's HTTP proxy")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from ..distributed.batch import BatchSettings, connect_ray
    from ..errors import MlclsError, UsageError
    from ..serving.settings import settings_from_args

    try:
        import ray
        from ray import serve

        from ..distributed.serve import mlcls_app
    except ImportError as exc:
        raise UsageError(f"serve-ray needs Ray Serve ({exc.name} is missing): "
                         "pip install 'mlcls[ray]'") from None
    settings = BatchSettings(pipeline=args.pipeline, model=args.model,
                             model_dir=args.model_dir, device=args.device, engine=args.engine,
                             threshold=args.threshold, fallback=args.fallback)
    serving = settings_from_args(args)
    started_here = connect_ray(args.address, None)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        app = mlcls_app(settings, serving, num_replicas=args.num_replicas)
        try:
            serve.run(app, name="mlcls", route_prefix="/")
        except Exception as exc:  # Serve reports a replica that cannot start this way
            lines = [line for line in str(exc).splitlines() if line.strip()]
            raise MlclsError("the deployment did not start: "
                             + (lines[-1] if lines else type(exc).__name__)) from None
        print(f"mlcls serve-ray: serving on http://{args.host}:{args.port} "
              f"({args.num_replicas} replica(s)); Ctrl-C stops it", file=sys.stderr)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        serve.shutdown()
        if started_here:
            ray.shutdown()
