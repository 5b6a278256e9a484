"""The ``mmformer`` command: one table of subcommands, one dispatcher, one place errors become one line.

    mmformer fit --config tasks/<recipe>.yaml [--config mine.yaml] [--section.key=value ...]
    mmformer test --config runs/version_0/config.yaml --ckpt_path runs/version_0/checkpoints/last.ckpt
    mmformer export --config runs/version_0/config.yaml --ckpt_path <ckpt> --out exported/
    mmformer --help                                   # every subcommand, one line each

``python -m mmformer`` and ``python -m mmformer.cli`` are the same command (torchrun runs the latter).
``fit``/``validate``/``test``/``predict`` are LightningCLI's (:mod:`mmformer.cli.lightning`); ``export``
parses its recipe with the same LightningCLI; the others are ``argparse`` programs whose options may also
come from ``--config`` YAML files (:mod:`mmformer.cli.config_files`). Every subcommand layers ``--config``
files in order, later ones and then the command line winning, and accepts a run's own saved
``config.yaml``. How errors print is :mod:`mmformer.cli.errors`.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from mmformer.cli.errors import DEBUG_HINT, INPUT_ERROR, USAGE_ERROR, UsageError, short_parser_error, user_error


@dataclass(frozen=True)
class Subcommand:
    """One subcommand: its name, what it does (for ``mmformer --help``) and the module whose ``main(argv)``
    runs it (``None``: LightningCLI's own). An ``argparse`` module also has ``build_parser()``, which
    :func:`~mmformer.cli.config_files.expand_config_files` reads to take its options from ``--config`` files."""

    name: str
    summary: str
    module: str | None = None
    argparse: bool = False


SUBCOMMANDS = (
    Subcommand("fit", "train a recipe's model (tasks/<recipe>.yaml; --config files layer in order)"),
    Subcommand("validate", "run a checkpoint over the validation split"),
    Subcommand("test", "run a checkpoint over the test split(s) and print the metrics"),
    Subcommand("predict", "write a checkpoint's predictions (predictions.* in the run folder)"),
    Subcommand("export", "a checkpoint -> model.safetensors + config.yaml, loaded without Lightning",
               "mmformer.cli.export"),
    Subcommand("convert", "a peer checkpoint (Hugging Face, timm, open_clip) -> mmformer weights",
               "mmformer.pretrained", argparse=True),
    Subcommand("prepare", "a dataset -> streaming shards (litdata) that DataModules read with shards=",
               "mmformer.cli.prepare", argparse=True),
    Subcommand("average", "the mean of several checkpoints' weights (e.g. the last N of a run)",
               "mmformer.cli.average", argparse=True),
    Subcommand("train-tokenizer", "a sentencepiece model trained on text files",
               "mmformer.cli.train_tokenizer", argparse=True),
)
_BY_NAME = {s.name: s for s in SUBCOMMANDS}


def usage() -> str:
    """The top-level help: every subcommand with its one-line summary."""
    width = max(len(s.name) for s in SUBCOMMANDS)
    lines = ["usage: mmformer <subcommand> [--config FILE ...] [options]   (mmformer <subcommand> --help)", "",
             "subcommands:"]
    lines += [f"  {s.name:<{width}}  {s.summary}" for s in SUBCOMMANDS]
    lines += ["", "--debug (or MMFORMER_DEBUG=1) shows the full traceback of an error."]
    return "\n".join(lines)


def _import_path_from_cwd() -> None:
    """Plug-in modules in the current folder import by name, as under ``python -m``."""
    cwd = os.getcwd()
    if cwd not in (os.path.abspath(p) for p in sys.path):
        sys.path.insert(0, cwd)


@contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    """LightningCLI reads ``sys.argv`` (given ``args`` it warns when ``sys.argv`` has options too)."""
    saved = sys.argv
    sys.argv = [saved[0] if saved else "mmformer", *argv]
    try:
        yield
    finally:
        sys.argv = saved


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else USAGE_ERROR
    sub = _BY_NAME.get(argv[0])
    if sub is None and not argv[0].startswith("-"):  # options first (--print_config ...): LightningCLI's
        close = difflib.get_close_matches(argv[0], list(_BY_NAME), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; one of {', '.join(_BY_NAME)}"
        raise UsageError(f"unknown subcommand '{argv[0]}'{hint} (mmformer --help lists them)")
    if sub is None or sub.module is None:
        from mmformer.cli.lightning import main

        with _argv(argv):
            main(exit_on_error=False)
        return 0
    module = importlib.import_module(sub.module)
    args = argv[1:]
    if sub.argparse and not {"-h", "--help"} & set(args):
        from mmformer.cli.config_files import expand_config_files

        args = expand_config_files(module.build_parser(), args)
    return int(module.main(args) or 0)  # convert returns None on success


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``mmformer <subcommand> ...`` (``argv`` defaults to ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("MMFORMER_DEBUG", "").strip() not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    _import_path_from_cwd()
    try:
        return _dispatch(argv)
    except (argparse.ArgumentError, UsageError) as e:
        if debug:
            raise
        message = short_parser_error(str(e), argv) if isinstance(e, argparse.ArgumentError) else str(e)
        print(f"error: {message}", file=sys.stderr)
        return USAGE_ERROR
    except Exception as e:
        found = None if debug else user_error(e)
        if found is None:
            raise
        print(f"error: {found} {DEBUG_HINT}", file=sys.stderr)
        return INPUT_ERROR


def console() -> None:
    """The ``mmformer`` console script: exits with :func:`main`'s status (prints no object)."""
    sys.exit(main())
