"""The ``mmformer`` command line, in one package: every subcommand, its parsing and its errors.

==================  ==========================================================================================
``command``         the ``mmformer`` command: the table of subcommands (``mmformer --help``), dispatch,
                    one-line errors (:func:`console` is the console script; ``python -m mmformer[.cli]``)
``lightning``       LightningCLI (``fit``/``validate``/``test``/``predict``): run folders, checkpoint checks
``recipes``         a recipe built from Python with a checkpoint's weights (:func:`load_task`)
``export``          ``mmformer export`` and :func:`load_exported` (safetensors + config, no Trainer)
``average``         ``mmformer average`` (the averaging itself is :mod:`mmformer.average`)
``config_files``    ``--config`` files for the argparse subcommands (convert, prepare, average, train-tokenizer)
``errors``          the one-line messages
==================  ==========================================================================================

The names below are imported on first access (PEP 562): ``mmformer --help`` loads no Lightning.
:func:`main` is the LightningCLI, callable from Python (``main(["fit", "--config", ...])`` returns the
CLI object with its trainer, or ``run=False`` builds the objects only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmformer.lazy import lazy_exports

if TYPE_CHECKING:  # the lazy names below, for type checkers and import-graph tools
    from mmformer.cli.command import console
    from mmformer.cli.export import export_model, load_exported
    from mmformer.cli.lightning import MMFormerCLI, main
    from mmformer.cli.recipes import load_task, model_config

_LAZY = {
    "console": "mmformer.cli.command",
    "export_model": "mmformer.cli.export",
    "load_exported": "mmformer.cli.export",
    "MMFormerCLI": "mmformer.cli.lightning",
    "main": "mmformer.cli.lightning",
    "load_task": "mmformer.cli.recipes",
    "model_config": "mmformer.cli.recipes",
}
__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
