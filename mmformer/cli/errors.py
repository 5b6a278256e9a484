"""One-line messages for the ``mmformer`` command's errors (:mod:`mmformer.cli.command` prints them).

Errors a user can fix are one line on stderr, ``error: <message>``, and an exit status:

* 2 (:data:`USAGE_ERROR`) — a bad option or config (unknown key, wrong type, missing ``--config`` file,
  unknown subcommand): the parser's error, with ``did you mean ...?`` for a misspelt key, class_path or
  subcommand, the value's dotted path and its expected type, and the config file or option it came from;
* 1 (:data:`INPUT_ERROR`) — the run stopped on bad input: a ``ValueError``, ``FileNotFoundError``,
  ``TypeError`` or ``NonFiniteLossError`` raised by mmformer itself (a bad file, row, checkpoint, or a
  NaN loss), also when a class's constructor raised it while jsonargparse built the recipe.

Anything else is a bug and keeps its full traceback; ``--debug`` (anywhere on the command line) or
``MMFORMER_DEBUG=1`` shows the full traceback for every error.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import linecache
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mmformer.models.config import TokenizerSpec

USAGE_ERROR, INPUT_ERROR = 2, 1
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])  # mmformer/: messages raised by its own code
DEBUG_HINT = "(run with --debug or MMFORMER_DEBUG=1 for the traceback)"


class UsageError(Exception):
    """A subcommand was called wrongly (a missing option, an unknown subcommand): printed as one line, exit 2."""


def _user_error_types() -> tuple[type[BaseException], ...]:
    from mmformer.tasks.base import NonFiniteLossError  # lazily: Lightning and the tasks load on demand

    return ValueError, FileNotFoundError, TypeError, NonFiniteLossError


def _raised_by_mmformer(error: BaseException) -> bool:
    """The innermost frame is a ``raise`` statement in mmformer's own code (a message meant for users)."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    inside = os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)
    return inside and linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise")


def _innermost_file(error: BaseException) -> str:
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename if tb is not None else ""


def user_error(error: BaseException) -> BaseException | None:
    """The error to show a user in one line: ``error`` itself when mmformer raised it for bad input, or the
    one jsonargparse wrapped while building a recipe's classes (its ``ValueError: Does not validate against
    any of the Union subtypes`` raised ``from`` the class's own error); None for anything else (a bug)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, _user_error_types()) and _raised_by_mmformer(error):
            return error
        if f"{os.sep}jsonargparse{os.sep}" not in _innermost_file(error):
            return None
        error = error.__cause__  # type: ignore[assignment]
    return None


def _resolve(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _config_files(argv: Sequence[str]) -> list[str]:
    files = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def _where(path: list[str], key: str, argv: Sequence[str]) -> str:
    """`` (from <file or option>)`` naming where the unknown ``key`` at ``path`` was given, if found."""
    for arg in argv:
        name = arg.split("=", 1)[0]
        dotted = f".{name[2:]}."
        if name.startswith("--") and f".{'.'.join([*path, key])}." in dotted:
            return f" (from option {name})"
    for file, node in _config_nodes(path, argv):
        if isinstance(node, dict) and key in node:
            return f" (in {file})"
    return ""


def _config_nodes(path: list[str], argv: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """``(file, the node at path)`` for each readable ``--config`` file of ``argv``, the last given first
    (the node is ``_MISSING`` where the file does not hold ``path``)."""
    import yaml

    for file in reversed(_config_files(argv)):
        try:
            node: Any = yaml.safe_load(Path(file).read_text())
        except (OSError, yaml.YAMLError):
            continue
        for part in path:
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        yield file, node


_EVENT = re.compile(r"Parser key \"(?P<key>[\w.]+)\"|class_path[ =]'(?P<cls>[\w.]+)'|"
                    r"Option '(?P<opt>[\w.]+)' is not accepted|"
                    r"Group '(?P<group>[\w.]+)' does not accept option '(?P<gopt>[\w.]+)'|"
                    r"unrecognized arguments: --(?P<unrec>[\w.]+)")


def unknown_key_message(message: str, argv: Sequence[str] = ()) -> str | None:
    """``unknown key 'backbon' in model.init_args; did you mean 'backbone'?`` from a jsonargparse error.

    The class whose signature rejected the key is the innermost ``class_path`` of the message; its
    parameters are the valid keys. ``None`` if the message is not about an unknown key.
    """
    path: list[str] = []
    cls: Any = None
    option = None
    for event in _EVENT.finditer(message):
        if event["key"]:
            path.extend(event["key"].split("."))
            cls = None
        elif (event["group"] or event["unrec"]) and cls is not None and option is None:
            # a key inside a dataclass argument (a task's model config, its backbone): walk down to it
            dotted = f"{event['group']}.{event['gopt']}" if event["group"] else event["unrec"]
            inner, cls, option = _descend(cls, dotted.split("."))
            path.extend(inner)
            break
        elif event["cls"] and _resolve(event["cls"]) is TokenizerSpec:
            continue  # jsonargparse tries a tokenizer as a TokenizerSpec first: the tokenizer class comes next
        elif event["cls"] and (option is None or cls is None):
            cls = _resolve(event["cls"])
            if cls is not None and not dataclasses.is_dataclass(cls):
                path.append("init_args")
            if option is not None:
                break
        elif event["opt"] and option is None:
            option = event["opt"]
            if cls is not None:
                break
    if option is None:
        return None
    key = option.split(".")[0]
    moved = _model_config_fields(cls)
    renamed = getattr(cls, "renamed_args", None) or {}
    if key in moved or renamed.get(key) in moved:
        new = renamed.get(key, key)
        return (f"unknown key '{key}' in {'.'.join(path) or 'the config'}: the model's settings moved under "
                f"'model' (the model config), so write it as {'.'.join([*path, 'model', new])}"
                f"{_where(path, key, argv)}")
    return _unknown(key, path, _parameters(cls), argv, renamed)


def _dataclass_of(cls: Any, name: str) -> Any:
    """The dataclass type of ``cls``'s argument or field ``name`` (a task's ``model``, a config's ``backbone``)."""
    import typing

    try:
        hints = typing.get_type_hints(cls if dataclasses.is_dataclass(cls) else cls.__init__)
    except Exception:  # an annotation that does not resolve
        return None
    hint = hints.get(name)
    return next((t for t in (hint, *typing.get_args(hint)) if isinstance(t, type) and dataclasses.is_dataclass(t)),
                None)


def _descend(cls: Any, parts: list[str]) -> tuple[list[str], Any, str]:
    """``(the path walked, the class there, the unknown key)`` for the dotted option ``parts`` under ``cls``."""
    walked: list[str] = []
    while len(parts) > 1 and (inner := _dataclass_of(cls, parts[0])) is not None:
        walked.append(parts[0])
        cls, parts = inner, parts[1:]
    return walked, cls, parts[0]


def _model_config_fields(cls: Any) -> set[str]:
    """The fields of the model config a task takes as its ``model`` argument (empty for other classes)."""
    import typing

    try:
        hint = typing.get_type_hints(cls.__init__).get("model") if isinstance(cls, type) else None
    except Exception:  # an annotation that does not resolve: no hint to give
        return set()
    types = [hint, *typing.get_args(hint)]
    return {f.name for t in types if dataclasses.is_dataclass(t) for f in dataclasses.fields(t)}


def _parameters(cls: Any) -> list[str]:
    """The keyword parameters of ``cls``, following ``**kwargs`` up the bases as jsonargparse does."""
    names: list[str] = []
    for base in getattr(cls, "__mro__", [cls] if cls is not None else []):
        try:
            params = inspect.signature(base.__init__ if isinstance(base, type) else base).parameters.values()
        except (TypeError, ValueError):
            break
        names += [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                  and p.name != "self" and p.name not in names]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def _top_level_unknown(message: str, argv: Sequence[str]) -> str | None:
    """A misspelt top-level or trainer key, in a config file or as an option."""
    found = re.search(r"does not accept option '([\w.]+)'|unrecognized arguments: --([\w.]+)", message)
    if found is None:
        return None
    parts = (found[1] or found[2]).split(".")
    if parts[0] == "trainer" and len(parts) > 1:
        import pytorch_lightning as pl

        return _unknown(parts[1], ["trainer"], _parameters(pl.Trainer), argv)
    return _unknown(parts[0], [], list(_TOP_LEVEL), argv)


_TOP_LEVEL = ("seed_everything", "trainer", "model", "data", "best_checkpoint", "optimizer", "lr_scheduler", "ckpt_path",
              "weights_only")


def _unknown(key: str, path: list[str], valid: list[str], argv: Sequence[str],
             renamed: dict[str, str] | None = None) -> str:
    """The one-line message for ``key``; ``renamed`` (a class's ``renamed_args``: old → new name)
    names the key's new name when it is an old one."""
    where = ".".join(path) or "the config"
    text = f"unknown key '{key}' in {where}"
    close = difflib.get_close_matches(key, valid, n=1)
    if isinstance(renamed, dict) and key in renamed:
        text += f": it was renamed to '{renamed[key]}'"
    elif close:
        text += f"; did you mean '{close[0]}'?"
    elif valid:
        text += f"; valid keys: {', '.join(valid)}"
    return text + _where(path, key, argv)


def _key_path(message: str, end: int | None = None) -> list[str]:
    """The dotted config path (``model.init_args.optim.lr``) that jsonargparse's nested message walks down,
    up to character ``end``: each ``Parser key`` adds its key, each class it names adds ``init_args``
    (a dataclass takes its fields directly)."""
    path: list[str] = []
    for event in _EVENT.finditer(message[:end]):
        if event["key"]:
            path.extend(event["key"].split("."))
        elif event["cls"]:
            cls = _resolve(event["cls"])
            if cls is not None and not dataclasses.is_dataclass(cls):
                path.append("init_args")
    return path


_CLASS_CANDIDATE = re.compile(r"class_path '(?P<a>[\w.]+)'|Expected a path but (?P<b>[\w.]+) either not accessible|"
                              r"Expected a dot import path string: (?P<c>[\w.]+)")
_SHORT_NAME_PACKAGES = ("mmformer.tasks", "mmformer.data", "mmformer.tokenizers", "mmformer")


def _submodules(module: Any) -> set[str]:
    import pkgutil

    return {m.name for m in pkgutil.iter_modules(getattr(module, "__path__", None) or [])}


def suggest_class_path(bad: str) -> str | None:
    """A class path close to ``bad`` that imports: each dotted part corrected against what exists (a short
    name against the public names of mmformer's task, data and tokenizer packages); None if none is close."""
    parts = bad.split(".")
    if len(parts) == 1:
        names: dict[str, str] = {}
        for package in _SHORT_NAME_PACKAGES:
            for name in getattr(importlib.import_module(package), "__all__", []):
                names.setdefault(name, f"{package}.{name}")
        close = difflib.get_close_matches(bad, list(names), n=1)
        return names[close[0]] if close else None
    try:
        obj: Any = importlib.import_module(parts[0])
    except ImportError:
        return None
    fixed = [parts[0]]
    for part in parts[1:]:
        names_here = {n for n in dir(obj) if not n.startswith("_")} | _submodules(obj)
        if part not in names_here:
            close = difflib.get_close_matches(part, sorted(names_here), n=1)
            if not close:
                return None
            part = close[0]
        fixed.append(part)
        try:
            obj = getattr(obj, part) if hasattr(obj, part) else importlib.import_module(".".join(fixed))
        except ImportError:
            return None
    suggestion = ".".join(fixed)
    return suggestion if suggestion != bad and _resolve(suggestion) is not None else None


def bad_class_path_message(message: str, argv: Sequence[str] = ()) -> str | None:
    """``model: cannot import class_path 'mmformer.tasks.ClassificatonTask'; did you mean ...?`` from a
    jsonargparse error about a class path that does not import; None if the message is about something else."""
    for found in _CLASS_CANDIDATE.finditer(message):
        bad = found["a"] or found["b"] or found["c"]
        if _resolve(bad) is not None:
            continue
        path = _key_path(message, found.start())
        text = f"{'.'.join(path) or 'the config'}: cannot import class_path '{bad}'"
        if "." not in bad:
            text += " (give the full dotted import path)"
        suggestion = suggest_class_path(bad)
        if suggestion is not None:
            text += f"; did you mean '{suggestion}'?"
        return text + (_where(path[:-1], path[-1], argv) if path else "")
    return None


_EXPECTED = re.compile(r"Expected a (?P<type><class '\w+'>|[^\n]+?)(?:\. Got value: (?P<value>[^\n]*))?$", re.M)


def _type_name(text: str) -> str:
    found = re.fullmatch(r"<class '(\w+)'>", text.strip())
    name = found[1] if found else text.strip().replace("typing.", "")
    return "null" if name == "NoneType" else name


def _given_value(path: list[str], argv: Sequence[str]) -> Any:
    """The value given for ``path``: the last option naming it, else the last --config file holding it."""
    option = "--" + ".".join(path)
    for i in range(len(argv) - 1, -1, -1):
        if argv[i].startswith(option + "="):
            return argv[i].split("=", 1)[1]
        if argv[i] == option and i + 1 < len(argv):
            return argv[i + 1]
    for _, node in _config_nodes(path, argv):
        if node is not _MISSING:
            return node
    return _MISSING


_MISSING = object()


def _nested_under(message: str, start: int) -> str:
    """The lines after the line holding ``start`` that are indented deeper than it (what jsonargparse nests
    under one ``Parser key``; a Union's other alternatives, less indented, are left out)."""
    line_start = message.rfind("\n", 0, start) + 1
    indent = start - line_start
    out = []
    for line in message[line_start:].splitlines()[1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        out.append(line)
    return "\n".join(out)


def bad_value_message(message: str, argv: Sequence[str] = ()) -> str | None:
    """``model.init_args.optim.lr: expected a float, got 'fast' (from option ...)`` from a jsonargparse error
    about a value of the wrong type; None if the message is about something else."""
    keys = list(re.finditer(r'Parser key "[\w.]+"', message))
    if not keys:
        return None
    tail = _nested_under(message, keys[-1].start())
    expected = list(_EXPECTED.finditer(tail))
    if not expected or "class_path" in tail:
        return None
    path = _key_path(message)
    types = list(dict.fromkeys(_type_name(e["type"]) for e in expected))
    literals = [t[len("Literal["):-1] for t in types if t.startswith("Literal[")]
    if literals:  # Literal[...] alternatives read as one list of the accepted values
        types = [f"one of {', '.join(literals)}", *(t for t in types if not t.startswith("Literal["))]
    value = next((e["value"] for e in expected if e["value"] is not None), None)
    given = _given_value(path, argv) if value is None else value
    text = f"{'.'.join(path)}: expected {' or '.join(types)}"
    if given is not _MISSING:
        text += f", got {str(given)!r}"
    return text + _where(path[:-1], path[-1], argv)


def short_parser_error(message: str, argv: Sequence[str]) -> str:
    unknown = (unknown_key_message(message, argv) or _top_level_unknown(message, argv)
               or bad_class_path_message(message, argv) or bad_value_message(message, argv))
    if unknown is not None:
        return unknown
    noise = ("Subtypes:", "Given value", "- Expected a <class 'NoneType'>", "Errors:",
             "Does not validate against any of the Union subtypes")
    lines = [line for line in message.splitlines() if not line.strip().startswith(noise)]
    return "\n".join(lines) + "\n(see `mmformer <subcommand> --help` for the accepted options)"

