"""``mlcls tune``: time every engine that can run a model on a device here; record the fastest,
which ``--engine auto`` then uses for that model, device type and batch size."""

from __future__ import annotations

import datetime

from .arguments import ArgumentParser, new_parser
from .table import print_table


def build_parser() -> ArgumentParser:
    p = new_parser(
        "mlcls tune", "Time each inference engine that can run the model on the device here "
        "(the same preprocessed batch, interleaved rounds) and record the fastest for "
        "--engine auto (in $MLCLS_HOME/tuning.json).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_dir", help="an inference-model directory")
    source.add_argument("--model", help="an official model name or mlcls-demo")
    p.add_argument("--device", default="cpu", help="the device to tune for")
    p.add_argument("--batch_size", type=int, default=1, help="images per batch")
    p.add_argument("--engines", help="comma-separated engines to compare (default: every "
                   "registered engine)")
    p.add_argument("--seconds", type=float, default=6.0,
                   help="timing budget per engine, split over 3 rounds")
    p.add_argument("--dry-run", action="store_true", help="measure, but record nothing")
    return p


def main(argv: list[str]) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.seconds <= 0:
        p.error(f"--seconds must be positive, got {args.seconds}")

    from .. import devices
    from ..errors import MlclsError
    from ..pipeline import create_pipeline, resolve_model
    from ..tuning import TunedChoice, record_choice, time_engines

    model = resolve_model(args.model, args.model_dir)
    names = ([n.strip().lower() for n in args.engines.split(",") if n.strip()]
             if args.engines else devices.known_engines())
    for name in names:
        devices.check_engine_name(name)
    pipelines = {}
    skipped = []
    try:
        for name in names:
            try:
                pipelines[name] = create_pipeline(
                    "multi_label_image_classification", device=args.device, engine=name,
                    model_dir=str(model.model_dir), batch_size=args.batch_size)
            except MlclsError as exc:
                skipped.append((name, str(exc)))
        if not pipelines:
            print("no engine can run this model here:")
            for name, why in skipped:
                print(f"  {name}: {why}")
            return 1
        device_type = next(iter(pipelines.values())).resolution.device.type
        timings = time_engines(pipelines, args.batch_size, args.seconds)
    finally:
        for pipeline in pipelines.values():
            pipeline.close()

    ranked = sorted(timings.values(), key=lambda t: t.median)
    print(f"model {model.model_dir} on {device_type}, batch {args.batch_size}:")
    print_table(("engine", "ms/img", "rounds", "where it ran"), [
        *((t.engine, f"{t.median:.1f}", ", ".join(f"{ms:.1f}" for ms in t.ms_per_image),
           t.placement) for t in ranked),
        *((name, "-", "-", f"not run: {why}") for name, why in skipped)],
        align="<><<", indent="  ")
    best = ranked[0]
    choice = TunedChoice(best.engine, {t.engine: round(t.median, 2) for t in ranked},
                         datetime.datetime.now().isoformat(timespec="seconds"),
                         str(model.model_dir))
    if args.dry_run:
        print(f"fastest: {best.engine} (not recorded: --dry-run)")
        return 0
    path = record_choice(model, device_type, args.batch_size, choice)
    print(f"fastest: {best.engine}; recorded in {path}: --engine auto takes it for this "
          f"model on {device_type} at batch {args.batch_size}")
    return 0
