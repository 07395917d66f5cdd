"""One way to open a MIDI file: :func:`read_midi` (pretty_midi) and its :class:`MidiReadError`.

Used by the music datasets (``training.music``) and the drum grids (``midigroove_poc.grid``);
checks specific to a caller (no notes, no drum notes) stay with that caller, which raises the
same error.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from workflow.errors import WorkflowError

if TYPE_CHECKING:
    import pretty_midi

__all__ = ["MidiReadError", "read_midi"]


class MidiReadError(WorkflowError):
    """A MIDI file is missing, empty, truncated or not MIDI (or, from a caller, has no notes)."""


def read_midi(
    path: Path | str,
    *,
    fix: str = "re-export it or remove it",
    missing_fix: str = "check the path",
) -> pretty_midi.PrettyMIDI:
    """Parse ``path`` with pretty_midi, or raise :class:`MidiReadError` naming the file and the fix.

    ``fix`` is what the message tells the user to do with an empty or unparsable file,
    ``missing_fix`` what to do when the path is not a file. pretty_midi's RuntimeWarnings about
    tempo and meta events on non-zero tracks (common and harmless) are silenced.
    """
    import pretty_midi  # heavy import; only needed here

    p = Path(path)
    if not p.is_file():
        raise MidiReadError(f"{p}: MIDI file not found (or not a regular file); {missing_fix}")
    if p.stat().st_size == 0:
        raise MidiReadError(f"{p}: MIDI file is empty (0 bytes); {fix}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return pretty_midi.PrettyMIDI(str(p))
    except Exception as exc:  # mido raises OSError, EOFError, KeyError, ValueError, IndexError...
        raise MidiReadError(
            f"{p}: cannot parse MIDI ({type(exc).__name__}: {exc}); the file is corrupt or "
            f"truncated: {fix}"
        ) from exc
