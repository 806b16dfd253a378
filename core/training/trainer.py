"""The training loop: AdamW with linear warm-up then cosine decay (the head at a fraction of
the rate), ASL (or BCE), validation mAP and a checkpoint after each epoch (the last N kept),
the best model exported to ``OUTPUT/best_model/inference``, and ``--resume`` from the last
checkpoint."""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from ..errors import UsageError
from ..plugin import available_cores
from ..progress import Progress
from ..results import atomic_write
from .augment import AugmentConfig
from .dataset import load_dataset
from .zoo import HEADS

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    dataset: str
    model: str
    output: str
    device: str | None = None
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    image_size: int = 224
    # bce: from scratch PP-LCNet fits faster with it than with ASL (train mAP 0.57 vs 0.42
    # after 200 steps on digits96, linear head); asl is PaddleX's (docs/fine-tuning.md)
    loss: str = "bce"
    pretrained: str | None = None
    resume: bool = False
    seed: int = 0
    workers: int = 0  # data threads; 0: up to 4, one per core
    threads: int = 0  # Paddle's CPU compute threads; 0: default_threads()
    # auto: the ML-Decoder when --pretrained brings one, else the backbone's own pool + fc
    head: str = "auto"
    # the head's learning rate as a multiple of the backbone's; None: HEAD_LR[head]
    head_lr: float | None = None
    keep_last: int = 2  # epoch_N checkpoints kept besides best_model
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class History:
    loss: list[float] = field(default_factory=list)
    train_map: list[float] = field(default_factory=list)  # on augmented batches, running
    val_map: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_map: float = -1.0


def learning_rate(cfg: TrainConfig, step: int, total: int, per_epoch: int) -> float:
    """Linear warm-up from 1% of the rate, then cosine down to zero."""
    warm = min(int(cfg.warmup_epochs * per_epoch), max(0, total - 1))
    if step < warm:
        return cfg.learning_rate * (0.01 + 0.99 * step / warm)
    progress = (step - warm) / max(1, total - warm)
    return cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def default_threads() -> int:
    """Paddle's compute threads when training on a CPU: the available cores but one, which
    the loader's threads and the loop need. On two cores two compute threads were slower
    than one (PP-LCNet_x1_0_ML at 96 px, batch 32, on a quiet machine: 32 against 39
    images/s with the linear head, 23 against 22 with the ML-Decoder): they wait on each
    other while the loader takes the second core."""
    return max(1, available_cores() - 1)


def compute_threads(count: int, import_paddle) -> None:
    """Run Paddle's CPU kernels on ``count`` threads, then import it with ``import_paddle``.

    Its kernels parallelise with OpenMP, which reads ``OMP_NUM_THREADS`` once, when Paddle's
    library loads, and Paddle sets that to 1 when the environment is silent, so a machine of
    many cores would train on one. A value the user exported is kept. Paddle's import-time
    notice about a value above 1 (it concerns data-parallel runs) is dropped; anything else
    it prints still shows. When Paddle is already loaded only its BLAS thread count can change."""
    import contextlib
    import io
    import os

    loaded = "paddle" in sys.modules
    if not loaded:
        os.environ.setdefault("OMP_NUM_THREADS", str(count))
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            import_paddle()
    finally:  # what Paddle printed before failing to load is shown too
        rest = [line for line in printed.getvalue().splitlines()
                if "OMP_NUM_THREADS" not in line and line.strip()]
        if rest:
            print("\n".join(rest), file=sys.stderr)
    if loaded:
        import paddle

        set_threads = getattr(paddle.base.core, "set_num_threads", None)
        if set_threads is not None:
            set_threads(count)


def paddle_device(spec: str | None) -> str:
    """The device layer's answer, in the form ``paddle.set_device`` takes: resolved, the
    type's environment set, and named by its backend (which refuses a type that cannot
    train)."""
    from ..devices import framework_device

    return framework_device(spec)


class TrainProgress(Progress):
    """The image progress bar, counting steps and showing the loss and the ETA."""

    loss = float("nan")
    epoch = ""

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        return (f"epoch {self.epoch} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.total} steps, loss {self.loss:.4f}, ETA {eta:.0f}s")


def _decay_filter(net):
    """Biases and normalisation weights (1-D) are not weight-decayed."""
    no_decay = {p.name for p in net.parameters() if len(p.shape) <= 1}
    return lambda name: name not in no_decay


def _portable_opt_state(net, state: dict, save: bool) -> dict:
    """Optimizer state keys start with a parameter's unique name (``conv2d_7.w_0``), which
    depends on how many layers the process built before; store them under the structured
    name (``backbone.conv1.conv.weight``) instead, so that --resume finds them again."""
    pairs = [(p.name, key) for key, p in net.named_parameters()]
    mapping = {a: b for a, b in pairs} if save else {b: a for a, b in pairs}
    out = {}
    for key, value in state.items():
        head, sep, tail = key.partition("_@@_") if not save else (key, "", "")
        if save:
            owner = next((n for n in mapping if key.startswith(n + "_")), None)
            out[f"{mapping[owner]}_@@_{key[len(owner) + 1:]}" if owner else key] = value
        elif sep and head in mapping:
            out[f"{mapping[head]}_{tail}"] = value
        else:
            out[key] = value
    return out


# The ML-Decoder learns at 1% of the backbone's rate: AdamW at 3e-4 or more on its post-norm
# transformer layer drives every score towards 1, where the asymmetric loss has no gradient
# left, and 3e-5 (3e-3 x 0.01) learns. A linear head takes the backbone's rate.
# (docs/fine-tuning.md, section 5)
HEAD_LR = {"mldecoder": 0.01, "linear": 1.0}


def resolve_head(cfg: TrainConfig) -> str:
    """``auto``: the ML-Decoder when the pretrained weights carry one (so that it is loaded
    too), else the backbone's own classifier, which learns far faster from scratch than the
    ML-Decoder does (docs/fine-tuning.md, section 5)."""
    if cfg.head != "auto":
        return cfg.head
    from .weights import carries_ml_decoder

    return "mldecoder" if cfg.pretrained and carries_ml_decoder(cfg.pretrained) else "linear"


def scale_head_lr(net, factor: float) -> None:
    """The head's tensors learn at ``factor`` times the rate (a multiplier Paddle's
    optimizers apply per tensor)."""
    for key, param in net.named_parameters():
        if key.startswith("fc."):
            param.optimize_attr["learning_rate"] = factor


def make_optimizer(cfg: TrainConfig, net):
    """AdamW at ``cfg.learning_rate`` with the head at ``cfg.head_lr`` times it (by default
    :data:`HEAD_LR` of the network's head); biases and normalisation weights are not
    decayed."""
    import paddle

    scale_head_lr(net, cfg.head_lr if cfg.head_lr is not None
                  else HEAD_LR[getattr(net, "head", "mldecoder")])
    return paddle.optimizer.AdamW(cfg.learning_rate, parameters=net.parameters(),
                                  weight_decay=cfg.weight_decay,
                                  apply_decay_param_fun=_decay_filter(net))


class Trainer:
    def __init__(self, cfg: TrainConfig, stream: TextIO | None = None):
        self.cfg = cfg
        self.out = Path(cfg.output).expanduser()
        self.stream = stream or sys.stderr
        for name, value in (("epochs", cfg.epochs), ("batch_size", cfg.batch_size),
                            ("image_size", cfg.image_size)):
            if value < 1:
                raise UsageError(f"--{name} must be at least 1, got {value}")
        if not cfg.learning_rate > 0:
            raise UsageError(f"--learning_rate must be positive, got {cfg.learning_rate}")
        if cfg.head_lr is not None and not cfg.head_lr > 0:
            raise UsageError(f"--head_lr must be positive, got {cfg.head_lr}")
        if cfg.head not in ("auto", *HEADS):
            raise UsageError(f"--head must be auto, {' or '.join(HEADS)}, got {cfg.head!r}")
        if cfg.keep_last < 1:
            raise UsageError(f"--keep_last must be at least 1, got {cfg.keep_last}")
        if cfg.workers < 0:
            raise UsageError(f"--workers must be 0 (automatic) or more, got {cfg.workers}")
        if cfg.threads < 0:
            raise UsageError(f"--threads must be 0 (automatic) or more, got {cfg.threads}")
        self.reported_bad: set[str] = set()

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    # -- state on disk ------------------------------------------------------------------------

    def _run_config(self, label_names: list[str], head: str) -> dict:
        cfg = asdict(self.cfg)
        cfg["head"] = head  # what auto chose: export and --resume rebuild this one
        cfg["label_names"] = label_names
        cfg["dataset"] = str(Path(self.cfg.dataset).expanduser().resolve())
        return cfg

    def _check_resume_config(self, saved: dict, label_names: list[str]) -> None:
        for key in ("model", "image_size"):
            if saved.get(key) != getattr(self.cfg, key):
                raise UsageError(f"--resume: {self.out} was trained with {key} "
                                 f"{saved.get(key)!r}, not {getattr(self.cfg, key)!r}")
        if saved.get("label_names") != label_names:
            raise UsageError(f"--resume: {self.out} was trained on other classes than "
                             f"{self.cfg.dataset}'s label.txt")

    def _checkpoints(self) -> list[Path]:
        """The complete epoch_N folders, oldest first."""
        found = sorted((int(p.name.split("_")[1]), p) for p in self.out.glob("epoch_*")
                       if p.name.split("_")[1].isdigit() and (p / "state.json").is_file())
        return [p for _, p in found]

    def _last_checkpoint(self) -> Path | None:
        found = self._checkpoints()
        return found[-1] if found else None

    def _prune_checkpoints(self) -> None:
        """Keep the last ``keep_last`` epochs; the best one lives on in best_model/."""
        for old in self._checkpoints()[:-self.cfg.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def _report_bad(self, bad: list[str]) -> None:
        for line in bad:
            if line not in self.reported_bad:
                self.reported_bad.add(line)
                self.say(f"warning: skipped an unreadable image: {line}")

    def _save_checkpoint(self, net, opt, epoch: int, history: History) -> Path:
        import paddle

        folder = self.out / f"epoch_{epoch}"
        tmp = self.out / f".epoch_{epoch}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        paddle.save(net.state_dict(), str(tmp / "model.pdparams"))
        paddle.save(_portable_opt_state(net, opt.state_dict(), save=True),
                    str(tmp / "model.pdopt"))
        (tmp / "state.json").write_text(json.dumps({"epoch": epoch,
                                                    "history": asdict(history)}))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        return folder

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> History:
        from ..paddle_engine import import_paddle_inference

        # before Paddle is imported: vendor variables only count if set before it loads
        self.device = paddle_device(self.cfg.device)
        compute_threads(self.cfg.threads or default_threads(), import_paddle_inference)
        import paddle

        # the optimizer names its moments after a process-wide counter; a fresh scope makes
        # them the same in every run, so that --resume finds them in the saved state
        with paddle.utils.unique_name.guard():
            return self._run()

    def _run(self) -> History:
        from ..paddle_engine import import_paddle_inference

        import_paddle_inference()  # imports Paddle without its import-time chatter
        import paddle

        from .data import SplitData
        from .export import CONFIG_NAME, export_network
        from .loss import make_loss
        from .metrics import mean_average_precision
        from .models import build_model, model_info
        from .plots import line_charts
        from .weights import load_pretrained

        cfg = self.cfg
        model_info(cfg.model)
        loss_fn = make_loss(cfg.loss)
        dataset = load_dataset(cfg.dataset)
        if dataset.errors:
            listing = "\n  ".join(str(p) for p in dataset.errors[:20])
            raise UsageError(f"{cfg.dataset}: the dataset has {len(dataset.errors)} problem(s) "
                             f"(run `mlcls dataset check {cfg.dataset}`):\n  {listing}")
        names = dataset.label_names
        device = getattr(self, "device", None) or paddle_device(cfg.device)
        paddle.set_device(device)
        paddle.seed(cfg.seed)
        self.out.mkdir(parents=True, exist_ok=True)
        history, start_epoch = History(), 1
        resume_from = self._last_checkpoint() if cfg.resume else None
        if cfg.resume and resume_from is None:
            raise UsageError(f"--resume: no checkpoint (epoch_N/state.json) in {self.out}")
        if resume_from is not None:
            saved = json.loads((self.out / CONFIG_NAME).read_text(encoding="utf-8"))
            self._check_resume_config(saved, names)
            head = saved.get("head", "mldecoder")  # runs before --head had only this one
            if cfg.head not in ("auto", head):
                raise UsageError(f"--resume: {self.out} was trained with head {head!r}, "
                                 f"not {cfg.head!r}")
        else:
            head = resolve_head(cfg)
        atomic_write(self.out / CONFIG_NAME, lambda fh: fh.write(json.dumps(
            self._run_config(names, head), indent=2)), mode="w")

        self.say(f"mlcls train: {cfg.model} on {device}, {dataset.num_classes} classes, "
                 f"{len(dataset.splits['train'].paths)} train / "
                 f"{len(dataset.splits['val'].paths)} val images at {cfg.image_size}px, "
                 f"{head} head")
        workers = cfg.workers or None
        train = SplitData(dataset.splits["train"], cfg.image_size, workers)
        val = SplitData(dataset.splits["val"], cfg.image_size, workers)
        net = build_model(cfg.model, dataset.num_classes, head=head)
        if cfg.pretrained and resume_from is None:
            self.say(load_pretrained(net, cfg.pretrained, cfg.model).summary())
        opt = make_optimizer(cfg, net)
        if resume_from is not None:
            net.set_state_dict(paddle.load(str(resume_from / "model.pdparams")))
            opt.set_state_dict(_portable_opt_state(
                net, paddle.load(str(resume_from / "model.pdopt")), save=False))
            state = json.loads((resume_from / "state.json").read_text(encoding="utf-8"))
            history = History(**state["history"])
            start_epoch = state["epoch"] + 1
            self.say(f"resuming after epoch {state['epoch']} from {resume_from}")

        drop_last = len(train) >= 2 * cfg.batch_size  # no tiny last batch for batch-norm
        per_epoch = train.steps(cfg.batch_size, drop_last)
        total = per_epoch * cfg.epochs
        rng = np.random.default_rng(cfg.seed + start_epoch)
        bar = TrainProgress(per_epoch * (cfg.epochs - start_epoch + 1), stream=self.stream,
                            enabled=None if self.stream.isatty() else False)
        for epoch in range(start_epoch, cfg.epochs + 1):
            net.train()
            bar.epoch = f"{epoch}/{cfg.epochs}"
            losses, scores, targets = [], [], []
            for i, batch in enumerate(train.batches(cfg.batch_size, rng, cfg.augment,
                                                     drop_last)):
                self._report_bad(batch.bad)
                step = (epoch - 1) * per_epoch + i
                if len(batch.y) < 2:  # batch-norm cannot train on one image
                    bar.update()
                    continue
                x, y = batch.x, batch.y
                opt.set_lr(learning_rate(cfg, step, total, per_epoch))
                logits = net(paddle.to_tensor(x))
                loss = loss_fn(logits, paddle.to_tensor(y))
                loss.backward()
                opt.step()
                opt.clear_grad()
                value = float(loss)
                if not math.isfinite(value):
                    raise UsageError(f"the loss became {value} at epoch {epoch}, step {i + 1}; "
                                     f"lower --learning_rate (now {cfg.learning_rate})")
                losses.append(value)
                scores.append(1 / (1 + np.exp(-logits.numpy())))
                targets.append(y)
                bar.loss = float(np.mean(losses[-20:]))
                bar.update()
            history.loss.append(float(np.mean(losses)))
            history.train_map.append(mean_average_precision(np.concatenate(scores),
                                                            np.concatenate(targets)))
            val_scores = predict_scores(net, val, report=self._report_bad)
            readable = np.isfinite(val_scores).all(axis=1)
            history.val_map.append(mean_average_precision(val_scores[readable],
                                                          val.labels[readable]))
            improved = history.val_map[-1] > history.best_map
            if improved:
                history.best_map, history.best_epoch = history.val_map[-1], epoch
            folder = self._save_checkpoint(net, opt, epoch, history)
            self._prune_checkpoints()
            if improved:
                best = self.out / "best_model"
                best.mkdir(exist_ok=True)
                shutil.copy2(folder / "model.pdparams", best / "model.pdparams")
                export_network(net, best / "inference", model_name=cfg.model,
                               image_size=cfg.image_size, label_names=names)
            bar.clear()
            self.say(f"epoch {epoch}/{cfg.epochs}: loss {history.loss[-1]:.4f}, train mAP "
                     f"{history.train_map[-1]:.4f} (running), val mAP "
                     f"{history.val_map[-1]:.4f}{'  * best' if improved else ''}")
            line_charts(self.out / "curves.png", [
                ("training loss", {"loss": history.loss}),
                ("mAP", {"val": history.val_map, "train (running)": history.train_map})])
        bar.close()
        atomic_write(self.out / "history.json",
                     lambda fh: fh.write(json.dumps(asdict(history), indent=2)), mode="w")
        self.say(f"best val mAP {history.best_map:.4f} at epoch {history.best_epoch}; "
                 f"model in {self.out / 'best_model' / 'inference'}")
        if cfg.loss == "asl":  # ASL keeps scores high; 0.5 rarely suits it
            self.say("thresholds: the export uses 0.5 for every class; fit per-class ones "
                     "with `mlcls eval --model_dir ... --dataset ... --calibrate --write`")
        return history


def predict_scores(net, data, batch_size: int = 64, report=None) -> np.ndarray:
    """Sigmoid scores of a split, in order, without augmentation; the rows of images that
    cannot be read are NaN (and passed to ``report``)."""
    import paddle

    net.eval()
    out = np.full(data.labels.shape, np.nan, np.float32)
    with paddle.no_grad():
        for batch in data.batches(batch_size):
            if report is not None:
                report(batch.bad)
            if len(batch.index):
                out[batch.index] = paddle.nn.functional.sigmoid(
                    net(paddle.to_tensor(batch.x))).numpy()
    net.train()
    return out
