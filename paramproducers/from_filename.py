"""Per-file constants parsed from the file name: ``kick_vel_64_pitch_60.5`` → vel=64, pitch=60.5.

The default ``--filename-regex`` finds every ``<letters>_<number>`` pair in the stem; a custom
regex has the named groups ``key`` and ``value``, or one named group per feature.
``--filename-keys`` keeps only those keys and fails a file that lacks one, so that every sidecar
gets the same columns. Details: paramproducers/README_paramproducers.md.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from workflow.errors import ProducerError, UsageError

DEFAULT_REGEX = (r"(?<![A-Za-z0-9])(?P<key>[A-Za-z]+)_"
                 r"(?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(?![A-Za-z0-9.])")

_STATE: dict = {}


def compile_regex(text: str) -> re.Pattern:
    try:
        rx = re.compile(text)
    except re.error as exc:
        raise UsageError(f"--filename-regex {text!r} is not a valid regular expression: {exc}") from None
    groups = set(rx.groupindex)
    if not groups:
        raise UsageError(f"--filename-regex {text!r} has no named groups: use (?P<key>…)_(?P<value>…) "
                         "pairs, or one (?P<feature_name>…) group per feature")
    if ("key" in groups) != ("value" in groups):
        raise UsageError("--filename-regex: the groups 'key' and 'value' go together")
    return rx


def parse_name(text: str, rx: re.Pattern) -> dict[str, float]:
    """All ``name → number`` pairs ``rx`` finds in ``text`` (see the module docstring)."""
    found: dict[str, str] = {}
    if "key" in rx.groupindex:
        for m in rx.finditer(text):
            key, value = m.group("key"), m.group("value")
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
                        help="keep only these keys; a file missing one fails (default: all found)")
    parser.add_argument("--filename-match", choices=("stem", "path"), default="stem",
                        help="match the file's stem (default) or its path relative to --audio-root "
                             "without extension (folder names can then carry parameters too)")


def init(args: argparse.Namespace) -> None:
    rx = compile_regex(getattr(args, "filename_regex", DEFAULT_REGEX))
    keys = getattr(args, "filename_keys", None)
    _STATE.clear()
    _STATE.update(rx=rx, keys=list(dict.fromkeys(keys)) if keys else None)


def feature_names(args: argparse.Namespace) -> list[str] | None:
    if _STATE["keys"]:
        return list(_STATE["keys"])
    names = [g for g in _STATE["rx"].groupindex if g not in ("key", "value")]
    return names if "key" not in _STATE["rx"].groupindex else None


def produce(ecdc_path: Path, T: int, *, args: argparse.Namespace) -> dict[str, dict]:
    text = name_for(ecdc_path, args)
    values = parse_name(text, _STATE["rx"])
    keys = _STATE["keys"]
    if keys:
        missing = [k for k in keys if k not in values]
        if missing:
            raise ProducerError(f"{text!r} has no value for {', '.join(missing)} (found: "
                                f"{', '.join(values) or 'nothing'}); check --filename-keys/--filename-regex")
        values = {k: values[k] for k in keys}
    if not values:
        raise ProducerError(f"no parameters found in {text!r}; names need <key>_<number> pairs such as "
                            "kick_vel_64_pitch_60.5, or pass --filename-regex")
    return {k: {"values": np.full(T, v, np.float32), "doc_string": f"{k} parsed from the file name"}
            for k, v in values.items()}
