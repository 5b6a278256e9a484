"""``--config`` files for the ``argparse`` subcommands (``average``, ``convert``, ``prepare``,
``train-tokenizer``), layered as ``mmformer fit`` layers them.

    mmformer average --config runs/version_3/config.yaml --config avg.yaml --output avg5.ckpt

Each file is a YAML mapping of the subcommand's options by name (``vocab_size`` or ``vocab-size``;
positional arguments by their name too: ``source: data/pets``). Files apply in order, each key
replacing an earlier file's, and the command line comes last, so its options win. The sections of a
recipe or of a run's saved ``config.yaml`` (``trainer``, ``model``, ``data``, ``ckpt_path``...) are
not these subcommands' options and are skipped, so a run's own config is accepted anywhere. Any other
key is an error naming the file, with the closest option.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Any, Sequence

import yaml

from mmformer.cli.errors import UsageError

# What a recipe or a run's saved config.yaml holds beside a subcommand's own options.
RECIPE_SECTIONS = frozenset({"seed_everything", "trainer", "model", "data", "optimizer", "lr_scheduler",
                             "best_checkpoint", "ckpt_path", "weights_only", "verbose", "return_predictions"})


def _split_config_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(config files in order, the other arguments)``."""
    files, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c"):
            if i + 1 >= len(argv):
                raise UsageError(f"{arg} needs a YAML file")
            files.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return files, rest


def _read(file: str) -> dict[str, Any]:
    path = Path(file)
    if not path.is_file():
        raise UsageError(f"--config {file} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UsageError(f"--config {file} is not valid YAML: {' '.join(str(e).split())}") from e
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise UsageError(f"--config {file} must be a mapping of option: value, not a {type(doc).__name__}")
    return doc


def _tokens(action: argparse.Action, value: Any) -> list[str]:
    """The command-line words that give ``action`` the YAML ``value``."""
    values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    if not action.option_strings:  # a positional
        return values
    flag = max(action.option_strings, key=len)  # the long form
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        wanted = isinstance(action, argparse._StoreTrueAction)
        if not isinstance(value, bool):
            raise UsageError(f"{flag[2:]}: expected true or false, got {value!r}")
        return [flag] if value == wanted else []
    return [flag, *values]


def expand_config_files(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with its ``--config`` files turned into the options they give, placed before the
    command line's own arguments (which therefore win). Positional arguments from a file come first,
    in the parser's order; a positional given in a file is not given again on the command line.

    Raises:
        UsageError: a missing or malformed file, or a key that is neither an option nor a recipe section.
    """
    files, rest = _split_config_args(argv)
    if not files:
        return list(argv)
    actions = {a.dest.replace("-", "_"): a for a in parser._actions if a.dest not in ("help", argparse.SUPPRESS)}
    merged: dict[str, tuple[Any, str]] = {}
    for file in files:
        for key, value in _read(file).items():
            name = str(key).replace("-", "_")
            if name in actions:
                merged[name] = (value, file)
            elif name not in RECIPE_SECTIONS:
                close = difflib.get_close_matches(name, list(actions), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; options: {', '.join(actions)}"
                raise UsageError(f"unknown key '{key}' in {file}{hint} (see `{parser.prog} --help`)")
    positionals, options = [], []
    for name, action in actions.items():
        if name in merged:
            words = _tokens(action, merged[name][0])
            (options if action.option_strings else positionals).extend(words)
    return [*positionals, *options, *rest]
