"""Real drum sounds for the tests: MIDI hits rendered by FluidSynth (pyfluidsynth) with the General
MIDI soundfont that ships inside pretty_midi (TimGM6mb.sf2, drum kits in bank 128, channel 10).

Reverb and chorus are off; before each item every voice is silenced (``all_sounds_off``) and
some silence is rendered and dropped, so a cymbal of one item never rings into the next. Onsets
stay those of the MIDI (quantised by FluidSynth to its 64-sample blocks, ≈1.5 ms at 44.1 kHz).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from midigroove_poc.grid import DrumEvents

__all__ = ["INSTALL_HINT", "KIT_PROGRAMS", "fluidsynth_missing", "render_gm_drums", "soundfont_path"]

INSTALL_HINT = "apt-get install -y libfluidsynth3 (the FluidSynth library; pyfluidsynth is in the lock)"
#: kit index → program of bank 128 in TimGM6mb.sf2 (0 "Standard", 16 "Power")
KIT_PROGRAMS = (0, 16)
_CHANNEL = 9  # MIDI channel 10, the drum channel
_BANK = 128
_NOTE_S = 0.05  # note length, as the fixture's MIDI files write it
_FLUSH_S = 0.5
_BLOCK = 64  # FluidSynth renders (and starts notes) in blocks of this many frames


def soundfont_path() -> Path:
    """TimGM6mb.sf2 inside the installed pretty_midi package."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def fluidsynth_missing() -> str | None:
    """Why FluidSynth cannot render here (with the command that fixes it), or None when it can."""
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth raises ImportError without libfluidsynth)
    except (ImportError, OSError) as exc:
        return f"FluidSynth is not usable ({exc}); install it: {INSTALL_HINT}"
    if not soundfont_path().is_file():
        return f"no General MIDI soundfont at {soundfont_path()} (reinstall pretty_midi)"
    return None


@functools.lru_cache(maxsize=4)
def _synth(sample_rate: int):
    """One synth per rate (and its frame counter, to keep items on the same block phase)."""
    import fluidsynth

    settings = {"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.cpu-cores": 1}
    fs = fluidsynth.Synth(gain=0.5, samplerate=float(sample_rate), **settings)
    sfid = fs.sfload(str(soundfont_path()))
    if sfid < 0:
        raise RuntimeError(f"FluidSynth could not load {soundfont_path()}")
    synth = (fs, sfid, [0])
    # The first notes of a fresh synth come out unlike any later render (measured: up to 0.036 in
    # the first 5 ms); after one throw-away pass over every key renders differ by < 0.003.
    for program in KIT_PROGRAMS:
        fs.program_select(_CHANNEL, sfid, _BANK, program)
        for pitch in range(22, 82):
            fs.noteon(_CHANNEL, pitch, 100)
        _samples(synth, _BLOCK * 16)
        fs.all_sounds_off(_CHANNEL)
    return synth


def _samples(synth: tuple, n: int) -> np.ndarray:
    """``n`` frames of the synth's output as mono float64 (the stereo int16 pair averaged)."""
    if n <= 0:
        return np.zeros(0, np.float64)
    synth[2][0] += n
    stereo = np.asarray(synth[0].get_samples(n), dtype=np.float64).reshape(-1, 2)
    return stereo.mean(axis=1) / 32768.0


def render_gm_drums(events: DrumEvents, duration_s: float, sample_rate: int = 44100, *, kit: int = 0) -> np.ndarray:
    """Render ``events`` with a GM drum kit to mono float32 ``[round(duration_s * sample_rate)]``."""
    synth = _synth(int(sample_rate))
    fs, sfid, done = synth
    fs.all_sounds_off(_CHANNEL)  # the previous item's cymbals stop here ...
    flush = int(_FLUSH_S * sample_rate)  # ... their release is rendered away, up to a block edge,
    _samples(synth, flush + (-(done[0] + flush)) % _BLOCK)  # so every item renders alike
    fs.program_select(_CHANNEL, sfid, _BANK, KIT_PROGRAMS[kit % len(KIT_PROGRAMS)])
    n_total = int(round(duration_s * sample_rate))
    # (sample, order, pitch, velocity): note-offs (order 0) before note-ons at the same sample
    todo = [(int(round(t * sample_rate)), 1, int(p), int(v))
            for t, p, v in zip(events.times, events.pitches, events.velocities)]
    todo += [(s + int(round(_NOTE_S * sample_rate)), 0, p, 0) for s, _, p, _ in todo]
    out, cursor = [], 0
    for start, is_on, pitch, vel in sorted(todo):
        if start >= n_total:
            break
        out.append(_samples(synth, start - cursor))
        cursor = max(cursor, start)
        if is_on:
            fs.noteon(_CHANNEL, pitch, vel)
        else:
            fs.noteoff(_CHANNEL, pitch)
    out.append(_samples(synth, n_total - cursor))
    return np.concatenate(out).astype(np.float32)
