"""``mlcls train``: fine-tune a multi-label model on a PaddleX-format dataset."""

from __future__ import annotations

import sys

from .arguments import ArgumentParser, new_parser
from .quiet import add_verbose_flag, paddle_quiet


def build_parser() -> ArgumentParser:
    from ..training.augment import AugmentConfig
    from ..training.trainer import HEAD_LR, TrainConfig
    from ..training.zoo import HEADS, LOSSES, MODELS

    d = TrainConfig("", "", "")
    a = AugmentConfig()
    p = new_parser("mlcls train", "Train a multi-label model (a backbone and a --head); the "
                   "best epoch by val mAP is exported to OUTPUT/best_model/inference.")
    p.add_argument("--dataset", required=True, help="dataset folder (mlcls dataset check)")
    p.add_argument("--model", required=True, choices=list(MODELS), metavar="NAME",
                   help=f"one of: {', '.join(MODELS)}")
    p.add_argument("--output", required=True, help="folder for checkpoints and the export")
    p.add_argument("--device", help="auto (default), cpu, gpu:0, npu:0, xpu:0, mlu:0")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the train split")
    p.add_argument("--batch_size", type=int, default=d.batch_size, help="images per step")
    p.add_argument("--learning_rate", type=float, default=d.learning_rate,
                   help="peak AdamW learning rate")
    p.add_argument("--head", choices=("auto", *HEADS), default=d.head,
                   help="mldecoder: PaddleX's ML-Decoder; linear: the backbone's own global "
                   "pool + fc, which learns far faster from scratch; auto: mldecoder when "
                   "--pretrained weights carry one, else linear")
    p.add_argument("--head_lr", type=float, default=d.head_lr,
                   help="the head's learning rate as a multiple of --learning_rate; default: "
                   + ", ".join(f"{v:g} for {k}" for k, v in HEAD_LR.items()))
    p.add_argument("--weight_decay", type=float, default=d.weight_decay,
                   help="AdamW weight decay")
    p.add_argument("--warmup_epochs", type=float, default=d.warmup_epochs,
                   help="linear warm-up length in epochs")
    p.add_argument("--image_size", type=int, default=d.image_size,
                   help="square input size in pixels")
    p.add_argument("--loss", choices=LOSSES, default=d.loss, help="training loss")
    p.add_argument("--pretrained", help="weights to start from: a PaddleClas/PaddleX or mlcls "
                   "training checkpoint (.pdparams, or a folder holding one) or an inference "
                   "model folder (inference.pdiparams); the head is skipped when the class "
                   "count differs, another architecture is refused")
    p.add_argument("--resume", action="store_true", help="continue from the last epoch_N "
                   "checkpoint in --output")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed")
    p.add_argument("--hflip", type=float, default=a.hflip,
                   help="horizontal flip probability; 0 (off) suits text, digits or arrows, "
                   "which mean something else mirrored, 0.5 suits natural photos")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="threads decoding and augmenting ahead of the step; 0: one per core, "
                   "up to 4")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="Paddle's compute threads on a CPU; 0: the available cores but one, "
                   "left to the loader (OMP_NUM_THREADS, when exported, wins)")
    p.add_argument("--keep_last", type=int, default=d.keep_last,
                   help="epoch_N checkpoints to keep besides best_model")
    p.add_argument("--affine", action="store_true",
                   help="also zoom, shift and rotate a little (+-15%%, +-10%%, +-10 degrees); "
                   "off by default: from scratch it slows learning (docs/fine-tuning.md)")
    p.add_argument("--no_augment", action="store_true", help="train on the images as they are")
    add_verbose_flag(p)
    return p


def main(argv: list[str]) -> int:
    from ..training.augment import AugmentConfig
    from ..training.trainer import TrainConfig, Trainer

    args = build_parser().parse_args(argv)
    if args.no_augment:
        aug = AugmentConfig.none()
    elif args.affine:
        aug = AugmentConfig.with_affine(hflip=args.hflip)
    else:
        aug = AugmentConfig(hflip=args.hflip)
    cfg = TrainConfig(dataset=args.dataset, model=args.model, output=args.output,
                      device=args.device, epochs=args.epochs, batch_size=args.batch_size,
                      learning_rate=args.learning_rate, weight_decay=args.weight_decay,
                      warmup_epochs=args.warmup_epochs, image_size=args.image_size,
                      loss=args.loss, pretrained=args.pretrained, resume=args.resume,
                      seed=args.seed, workers=args.workers, threads=args.threads,
                      keep_last=args.keep_last,
                      head=args.head, head_lr=args.head_lr, augment=aug)
    try:
        with paddle_quiet(args.verbose):
            Trainer(cfg).run()
    except KeyboardInterrupt:
        print("mlcls train: interrupted; continue with --resume", file=sys.stderr)
        return 130
    return 0
