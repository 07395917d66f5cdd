"""Beat position of each token frame at a fixed tempo: beat_phase (0..1 within the beat) and beat_index.

Frame t starts at t / fps seconds. With --bpm B and --beat-offset O (time of the first beat),
the position in beats is (t / fps - O) * B / 60; beat_phase is its fractional part and
beat_index its integer part (negative before the first beat).

Example: wf-sidecar-add --audio-root tokens/ --producers-dir paramproducers/examples --producer beat_phase --bpm 120
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from workflow.ecdc import read_ecdc_header
from workflow.errors import UsageError

_STATE: dict[str, float] = {}  # set by init(): plain module state, inherited by forked workers


def add_cli_args(parser: argparse._ActionsContainer) -> None:
    # Prefix flags with something only this producer uses: all producers share one parser.
    parser.add_argument("--bpm", type=float, default=None, help="tempo in beats per minute (required)")
    parser.add_argument("--beat-offset", type=float, default=0.0,
                        help="time of the first beat in seconds (default 0)")


def init(args: argparse.Namespace) -> None:
    # Check flags once, before any file: a UsageError here stops the run with exit code 2.
    if args.bpm is None or not args.bpm > 0:
        raise UsageError("producer beat_phase needs --bpm > 0")
    _STATE.update(beats_per_second=args.bpm / 60.0, offset=args.beat_offset)


def feature_names(args: argparse.Namespace) -> list[str]:
    # Optional: lets --skip-existing skip finished files without calling produce().
    return ["beat_phase", "beat_index"]


def produce(ecdc_path: Path, T: int, *, args: argparse.Namespace) -> dict[str, dict]:
    fps = read_ecdc_header(ecdc_path).fps  # header only: no decoding
    beats = (np.arange(T) / fps - _STATE["offset"]) * _STATE["beats_per_second"]
    index = np.floor(beats)
    return {
        # min/max given here are the normalisation range, kept as-is in the sidecar JSON.
        "beat_phase": {"values": beats - index, "units": "beats", "min": 0.0, "max": 1.0,
                       "doc_string": "position within the current beat (0 = on the beat)"},
        "beat_index": {"values": index, "units": "beats", "doc_string": "beats since the first beat"},
    }
