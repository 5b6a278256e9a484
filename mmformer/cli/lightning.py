"""LightningCLI over any task module and DataModule: ``fit``/``validate``/``test``/``predict`` of the
``mmformer`` command (:mod:`mmformer.cli.command`), and the parser :mod:`mmformer.cli.recipes` builds
objects with.

    mmformer fit  --config tasks/<recipe>.yaml [--config configs/model/small.yaml] [--trainer configs/trainer/ddp.yaml]
    mmformer test --config tasks/<recipe>.yaml --ckpt_path runs/version_0/checkpoints/last.ckpt

Everything else (``--print_config``, dotted overrides, the saved ``config.yaml`` beside the logs)
is LightningCLI's own behaviour; class signatures are the schema.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import _RICH_AVAILABLE
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI

from mmformer.checkpoint import read_checkpoint
from mmformer.tasks.best_checkpoint import BestCheckpoint

# Every run logs to TensorBoard and CSV under runs/ and keeps its last checkpoint (the trainer's ModelCheckpoint)
# and its best one by the task's validation metric (the `best_checkpoint` section: BestCheckpoint, best.ckpt).
DEFAULT_ROOT = "runs"
TRAINER_DEFAULTS: dict[str, Any] = {
    "default_root_dir": DEFAULT_ROOT,
    "logger": [
        # CSV first: it warns about (and clears only) a metrics.csv in a folder that already has files.
        {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": DEFAULT_ROOT, "name": ""}},
        {"class_path": "pytorch_lightning.loggers.TensorBoardLogger", "init_args": {"save_dir": DEFAULT_ROOT, "name": ""}},
    ],
    "callbacks": [
        {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {"save_last": True}},
        {"class_path": "pytorch_lightning.callbacks.LearningRateMonitor", "init_args": {"logging_interval": "step"}},
    ],
}


def _next_version(folder: Path) -> int:
    """The first unused ``version_N`` under ``folder`` (Lightning's own numbering)."""
    used = [int(p.name.split("_")[1]) for p in folder.glob("version_*") if p.name.split("_")[1].isdigit()]
    return max(used, default=-1) + 1


def reserve_version(folder: str | Path) -> int:
    """Creates the first free ``version_N`` folder under ``folder`` and returns ``N``.

    ``os.mkdir`` either creates the folder or fails, so runs started together under one root never
    share a version: whoever loses the race takes the next number.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    version = _next_version(folder)
    while True:
        try:
            os.mkdir(folder / f"version_{version}")
            return version
        except FileExistsError:
            version += 1


# What a run that failed at start-up leaves in its version folder: nothing worth keeping.
_STARTUP_FILES = ("config.yaml", "hparams.yaml")


def _holds_nothing_useful(run_dir: Path) -> bool:
    """True if ``run_dir`` has no checkpoint and no logged metrics, only start-up files.

    Relies on the CSV logger (one of the defaults) writing ``metrics.csv`` whenever anything was
    logged; TensorBoard event files count as start-up files only beside it.
    """
    for path in run_dir.rglob("*"):
        if path.is_dir():
            continue
        name = path.relative_to(run_dir).as_posix()
        if name in _STARTUP_FILES or name.startswith("events.out.tfevents."):
            continue
        if name == "metrics.csv" and len(path.read_text().splitlines()) <= 1:
            continue
        return False
    return True


def _names_a_file(ckpt_path: str) -> bool:
    """False for the --ckpt_path values Lightning resolves itself: keywords, registry names, URLs."""
    return ckpt_path not in ("last", "best", "hpc") and not ckpt_path.lower().startswith("registry") \
        and "://" not in ckpt_path


def _newest_last_checkpoint(root: Path) -> Path | None:
    """The most recently written ``version_*/checkpoints/last*.ckpt`` under ``root``, if any."""
    found = list(root.glob("version_*/checkpoints/last*.ckpt"))
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _limit_threads() -> None:
    """Use the CPUs this process may run on (cgroup/affinity), not every core of the host."""
    if "OMP_NUM_THREADS" in os.environ or not hasattr(os, "sched_getaffinity"):
        return
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))


def warn_slow_bf16(precision: str, accelerator: str) -> bool:
    """Warns (and returns True) when a bf16 run will use a CPU without native bf16 matmuls.

    Without AVX512-BF16/AMX, PyTorch emulates bf16 matmuls on the CPU some 20x slower than fp32
    (measured on an AVX2 EPYC: 1.2 vs 29 GFLOP/s), so a recipe tuned for bf16-mixed on such hardware
    would overrun its time promise many times over.
    """
    if "bf16" not in precision or accelerator not in ("cpu", "auto", "None") or (
            accelerator != "cpu" and torch.cuda.is_available()):
        return False
    if cpu_has_native_bf16():
        return False
    warnings.warn(f"precision={precision} on this CPU (no avx512_bf16/amx_bf16/bf16 flag in /proc/cpuinfo) runs "
                  f"matmuls ~20x slower than fp32; pass --trainer.precision=32-true", stacklevel=2)
    return True


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU flags list bf16 arithmetic (x86 AVX512-BF16 or AMX, Arm BF16); True when unknown."""
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:  # not Linux: nothing to go by, so no warning
        return True
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


# The arguments of Trainer.fit/validate/test/predict that a run's saved config.yaml holds.
_SUBCOMMAND_ARGS: dict[str, type] = {"ckpt_path": str, "weights_only": bool, "verbose": bool, "return_predictions": bool}


class MMFormerCLI(LightningCLI):
    """LightningCLI with mmformer's defaults: seeded runs, TensorBoard + CSV logs, weights-only checkpoint loading.

    Each run reserves its own ``version_N`` folder (:func:`reserve_version`); a run that fails before
    writing a checkpoint or a metric removes that folder again, so the next run takes its number.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._reserved_dir: Path | None = None
        self._building_only = not kwargs.get("run", True)  # parsed to build objects (recipes), no subcommand
        self._created_dirs: set[Path] = set()  # the reserved folder's parents this run made (runs/ itself)
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self._drop_unused_run_dir()
            raise

    def _drop_unused_run_dir(self) -> None:
        run_dir, self._reserved_dir = self._reserved_dir, None
        if run_dir is not None and run_dir.is_dir() and _holds_nothing_useful(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            # and the folders this run created to hold it (runs/ on a first run), when nothing else is there
            for folder in run_dir.parents:
                if folder not in self._created_dirs:
                    break
                try:
                    folder.rmdir()
                except OSError:  # not empty: another run or the user's files
                    break

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        super().parse_arguments(parser, args)
        # A corrupt or truncated --ckpt_path gets an error that says so (Lightning's own reading of it,
        # right after parsing, fails with a zip-reader message); weights-only reading either way.
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if ckpt_path and (Path(ckpt_path).is_file() or _names_a_file(ckpt_path)):
            read_checkpoint(ckpt_path)  # FileNotFoundError for a path that does not exist

    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        if self.subcommand in ("validate", "test", "predict"):
            # The checkpoint's ModelCheckpoint state names the run that trained it; this run's callbacks write
            # nothing, so Lightning's "The dirpath has changed from ... won't be reloaded" says nothing useful.
            warnings.filterwarnings("ignore", message="The dirpath has changed from")
        warn_slow_bf16(str(cfg.trainer.get("precision")), str(cfg.trainer.get("accelerator")))
        # Checkpoints given by --ckpt_path are read with torch.load(weights_only=True): never unpickle code.
        if cfg.get("weights_only", False) is None:
            cfg.weights_only = True
        if cfg.get("ckpt_path") == "last":  # resume the newest run under the root, not the new version's
            found = _newest_last_checkpoint(Path(cfg.trainer.default_root_dir or DEFAULT_ROOT))
            if found is not None:
                cfg.ckpt_path = str(found)
        # Default loggers write under the run's root, so --trainer.default_root_dir moves everything,
        # and share one version folder: runs/version_N holds events, metrics.csv, config and checkpoints.
        trainer = cfg.trainer
        loggers = [lg for lg in (trainer.logger if isinstance(trainer.logger, list) else [])
                   if getattr(lg, "init_args", None) is not None]
        for logger in loggers:
            if logger.init_args.get("save_dir") == DEFAULT_ROOT:
                logger.init_args.save_dir = trainer.default_root_dir or DEFAULT_ROOT
        places = {(lg.init_args.get("save_dir"), lg.init_args.get("name")) for lg in loggers}
        if loggers and len(places) == 1 and all(lg.init_args.get("version") is None for lg in loggers):
            save_dir, name = places.pop()
            folder = Path(save_dir) / (name or "")
            if self.subcommand is None:  # parsed to build objects (run=False): nothing gets written
                version = _next_version(folder)
            else:
                self._created_dirs = {p for p in (folder, *folder.parents) if not p.exists()}
                version = reserve_version(folder)
                if any(str(lg.class_path).endswith("CSVLogger") for lg in loggers):
                    self._reserved_dir = folder / f"version_{version}"
            for logger in loggers:
                logger.init_args.version = version

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Defaults set on the parser (not trainer_defaults) stay configurable and show in --print_config.
        parser.set_defaults({f"trainer.{k}": v for k, v in TRAINER_DEFAULTS.items()})
        # Its own section, not one of trainer.callbacks: a recipe that lists its callbacks keeps it.
        parser.add_lightning_class_args(BestCheckpoint, "best_checkpoint")
        if self._building_only:
            # A run's saved config.yaml holds its subcommand's own arguments too: accepted, so it builds
            # the same objects (ckpt_path is what `mmformer export` exports when --ckpt_path is not given).
            for name, kind in _SUBCOMMAND_ARGS.items():
                parser.add_argument(f"--{name}", type=Optional[kind], default=None,
                                    help=f"a subcommand's {name}, read from a run's config.yaml")

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[pl.Callback]) -> pl.Trainer:
        if config.get("enable_checkpointing") is False:  # Lightning refuses any ModelCheckpoint then
            callbacks = [c for c in callbacks if not isinstance(c, BestCheckpoint)]
        given = [*(config.get("callbacks") or []), *callbacks]
        if config.get("enable_progress_bar") is not False and _RICH_AVAILABLE \
                and not any(isinstance(c, ProgressBar) for c in given):
            callbacks = [*callbacks, EpochProgressBar()]  # Lightning's default bar, without "Epoch 3/-2"
        return super()._instantiate_trainer(config, callbacks)


class EpochProgressBar(RichProgressBar):
    """Lightning's rich progress bar, reading ``Epoch 3`` rather than ``Epoch 3/-2`` when ``max_steps``
    bounds the run (Lightning then sets ``max_epochs=-1`` and prints ``max_epochs - 1`` as the last epoch)."""

    def _get_train_description(self, current_epoch: int) -> str:
        text = super()._get_train_description(current_epoch)
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and max_epochs < 1:
            text = text.replace(f"Epoch {current_epoch}/{max_epochs - 1}", f"Epoch {current_epoch}", 1)
        return text


class _NoAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger/litmodels" lines, printed by every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def _quiet_lightning() -> None:
    """Installs :class:`_NoAdverts` once on the logger Lightning's ``rank_zero_info`` writes to."""
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in log.filters):
        log.addFilter(_NoAdverts())


def main(args: ArgsType = None, run: bool = True, *, exit_on_error: bool = True) -> MMFormerCLI:
    """LightningCLI's subcommands of the ``mmformer`` command (also callable from Python with ``args``).

    ``exit_on_error=False`` raises jsonargparse's ``ArgumentError`` for a bad option or config
    instead of printing the usage and exiting (:mod:`mmformer.cli.command` shortens it to one line).
    """
    _limit_threads()
    _quiet_lightning()
    with warnings.catch_warnings():  # the filters a subcommand adds (before_instantiate_classes) end with it
        return MMFormerCLI(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            args=args,
            run=run,
            parser_kwargs={"exit_on_error": exit_on_error},
        )

