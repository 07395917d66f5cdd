"""Per-file constants parsed from the file name: ``kick_vel_64_pitch_60.5`` → vel=64, pitch=60.5.

The default regex takes every ``<letters>_<number>`` pair of the stem; a custom ``--filename-regex``
has groups ``key`` (or ``name``) + ``value`` per pair, or one named group per feature.
``--filename-keys`` keeps only those keys; ``--filename-default key=value`` fills a key a name
lacks. Before writing, s4 checks that every file gets the same keys and, if not, names the odd
files and prints a command that works. Details: paramproducers/README_paramproducers.md.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from workflow.errors import ProducerError, UsageError

from .const import parse_named_numbers

DEFAULT_REGEX = (r"(?<![A-Za-z0-9])(?P<key>[A-Za-z]+)_"
                 r"(?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(?![A-Za-z0-9.])")

_STATE: dict = {}


def pair_groups(rx: re.Pattern) -> tuple[str, str] | None:
    """The (key, value) group names of a pair regex: ``key`` (or the seed's ``name``) + ``value``."""
    if "value" not in rx.groupindex:
        return None
    return ("key" if "key" in rx.groupindex else "name", "value")


def compile_regex(text: str) -> re.Pattern:
    try:
        rx = re.compile(text)
    except re.error as exc:
        raise UsageError(f"--filename-regex {text!r} is not a valid regular expression: {exc}") from None
    groups = set(rx.groupindex)
    if not groups:
        raise UsageError(f"--filename-regex {text!r} has no named groups: use (?P<key>…)_(?P<value>…) "
                         "pairs, or one (?P<feature_name>…) group per feature")
    if "key" in groups and "value" not in groups:
        raise UsageError("--filename-regex: the group 'key' needs a 'value' group too, "
                         "e.g. '(?P<key>[A-Za-z]+)_(?P<value>-?\\d+(\\.\\d+)?)'")
    if "value" in groups and not groups & {"key", "name"}:
        raise UsageError("--filename-regex: the group 'value' needs a 'key' (or 'name') group too, "
                         "e.g. '(?P<key>[A-Za-z]+)_(?P<value>-?\\d+(\\.\\d+)?)'")
    return rx


def parse_name(text: str, rx: re.Pattern) -> dict[str, float]:
    """All ``name → number`` pairs ``rx`` finds in ``text`` (see the module docstring)."""
    found: dict[str, str] = {}
    pair = pair_groups(rx)
    if pair is not None:
        for m in rx.finditer(text):
            key, value = m.group(pair[0]), m.group(pair[1])
            if key in found:
                raise ProducerError(f"key {key!r} appears twice in {text!r}")
            found[key] = value
    else:
        m = rx.search(text)
        if m is not None:
            found = {k: v for k, v in m.groupdict().items() if v is not None}
    out = {}
    for key, value in found.items():
        try:
            out[key] = float(value)
        except ValueError:
            raise ProducerError(f"{key}={value!r} in {text!r} is not a number") from None
    return out


def name_for(ecdc_path: Path, args: argparse.Namespace) -> str:
    """What the regex is matched against: the stem, or the relative path without extension."""
    p = Path(ecdc_path)
    root = getattr(args, "audio_root", None)
    if getattr(args, "filename_match", "stem") == "path" and root is not None:
        return p.relative_to(root).with_suffix("").as_posix()
    return p.stem


def add_cli_args(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--filename-regex", default=DEFAULT_REGEX, metavar="REGEX",
                        help="regex with named groups (default: every <letters>_<number> pair)")
    parser.add_argument("--filename-keys", nargs="+", default=None, metavar="KEY",
                        help="keep only these keys; a file missing one fails unless it has a "
                             "--filename-default (default: all found)")
    parser.add_argument("--filename-default", action="append", default=None, metavar="KEY=VALUE",
                        help="the value of KEY for files whose name lacks it (repeatable)")
    parser.add_argument("--filename-match", choices=("stem", "path"), default="stem",
                        help="match the file's stem (default) or its path relative to --audio-root "
                             "without extension (folder names can then carry parameters too)")


def parse_defaults(items: list[str] | None) -> dict[str, float]:
    return parse_named_numbers(items, "--filename-default", "key=value, e.g. --filename-default vel=0")


def init(args: argparse.Namespace) -> None:
    rx = compile_regex(getattr(args, "filename_regex", DEFAULT_REGEX))
    keys = getattr(args, "filename_keys", None)
    defaults = parse_defaults(getattr(args, "filename_default", None))
    if keys:
        unused = [k for k in defaults if k not in keys]
        if unused:
            raise UsageError(f"--filename-default {', '.join(unused)}: not among --filename-keys "
                             f"({' '.join(keys)}); add it there or drop the default")
    _STATE.clear()
    _STATE.update(rx=rx, keys=list(dict.fromkeys(keys)) if keys else None, defaults=defaults)


def feature_names(args: argparse.Namespace) -> list[str] | None:
    if _STATE["keys"]:
        return list(_STATE["keys"])
    rx = _STATE["rx"]
    return None if pair_groups(rx) is not None else list(rx.groupindex)


def values_for(ecdc_path: Path, args: argparse.Namespace) -> tuple[str, dict[str, float]]:
    """The name matched and its ``key → value`` pairs, defaults filled in, ``--filename-keys`` kept."""
    text = name_for(ecdc_path, args)
    values = {**_STATE["defaults"], **parse_name(text, _STATE["rx"])}
    keys = _STATE["keys"]
    if keys:
        values = {k: values[k] for k in keys if k in values}
    return text, values


def feature_names_for(ecdc_path: Path, args: argparse.Namespace) -> list[str]:
    """The columns this file will get (s4's pre-pass compares them across files)."""
    return list(values_for(ecdc_path, args)[1])


def suggest_args(groups: dict[tuple[str, ...], list[str]], args: argparse.Namespace) -> list[str]:
    """Extra flags that give every file the same keys: ``--filename-keys`` (the wanted keys, the
    most common non-empty set unless given) and a ``--filename-default`` for each key a file lacks."""
    keys = _STATE["keys"]
    if not keys:
        sets = [g for g in groups if g]
        if not sets:
            return []
        keys = list(max(sets, key=lambda g: (len(groups[g]), len(g))))
    lacking = [k for k in keys if any(k not in g for g in groups) and k not in _STATE["defaults"]]
    extra = [] if _STATE["keys"] else ["--filename-keys", *keys]
    for k in lacking:
        extra += ["--filename-default", f"{k}=0"]
    return extra


def produce(ecdc_path: Path, T: int, *, args: argparse.Namespace) -> dict[str, dict]:
    text, values = values_for(ecdc_path, args)
    keys = _STATE["keys"]
    if keys:
        missing = [k for k in keys if k not in values]
        if missing:
            raise ProducerError(f"{text!r} has no value for {', '.join(missing)}; pass "
                                f"--filename-default {missing[0]}=VALUE or check --filename-keys/--filename-regex")
    if not values:
        raise ProducerError(f"no parameters found in {text!r}; names need <key>_<number> pairs such as "
                            "kick_vel_64_pitch_60.5, or pass --filename-regex / --filename-default")
    return {k: {"values": np.full(T, v, np.float32), "doc_string": f"{k} parsed from the file name"}
            for k, v in values.items()}
