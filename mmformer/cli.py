"""The ``mmformer`` command: a thin LightningCLI over any task module and DataModule.

    mmformer fit  --config tasks/<recipe>.yaml [--config configs/model/small.yaml] [--trainer configs/trainer/ddp.yaml]
    mmformer test --config tasks/<recipe>.yaml --ckpt_path runs/version_0/checkpoints/last.ckpt

The ``mmformer`` console script is :func:`mmformer.console.console`, which also dispatches
``export`` and ``train-tokenizer``; this module is LightningCLI alone, so the modules built on it
(``mmformer.recipes``, ``mmformer.export``) can import it without a cycle.
Everything else (``--print_config``, dotted overrides, the saved ``config.yaml`` beside the logs)
is LightningCLI's own behaviour; class signatures are the schema.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI

from mmformer.checkpoint import read_checkpoint

# Every run logs to TensorBoard and CSV under runs/ and keeps its last and best checkpoints.
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


def _newest_last_checkpoint(root: Path) -> Path | None:
    """The most recently written ``version_*/checkpoints/last*.ckpt`` under ``root``, if any."""
    found = list(root.glob("version_*/checkpoints/last*.ckpt"))
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _limit_threads() -> None:
    """Use the CPUs this process may run on (cgroup/affinity), not every core of the host."""
    if "OMP_NUM_THREADS" in os.environ or not hasattr(os, "sched_getaffinity"):
        return
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))


class MMFormerCLI(LightningCLI):
    """LightningCLI with mmformer's defaults: seeded runs, TensorBoard + CSV logs, weights-only checkpoint loading."""

    def before_instantiate_classes(self) -> None:
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
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
        if len(loggers) > 1 and len(places) == 1 and all(lg.init_args.get("version") is None for lg in loggers):
            save_dir, name = places.pop()
            version = _next_version(Path(save_dir) / (name or ""))
            for logger in loggers:
                logger.init_args.version = version

    def _parse_ckpt_path(self) -> None:
        # A corrupt or truncated --ckpt_path gets an error that says so (Lightning's is a zip-reader
        # message); weights-only reading either way.
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path") if self.config.get("subcommand") else None
        if ckpt_path and Path(ckpt_path).is_file():
            read_checkpoint(ckpt_path)
        super()._parse_ckpt_path()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Defaults set on the parser (not trainer_defaults) stay configurable and show in --print_config.
        parser.set_defaults({f"trainer.{k}": v for k, v in TRAINER_DEFAULTS.items()})


def main(args: ArgsType = None, run: bool = True) -> MMFormerCLI:
    """Entry point of the ``mmformer`` console script (also callable from Python with ``args``)."""
    _limit_threads()
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
    )


if __name__ == "__main__":  # `python -m mmformer.cli fit ...`: LightningCLI's subcommands only
    import sys

    if sys.argv[1:2] in (["export"], ["train-tokenizer"]):
        sys.exit(f"`{sys.argv[1]}` is a subcommand of the `mmformer` command (or `python -m mmformer`), "
                 f"not of `python -m mmformer.cli`")
    main()
