"""The FluidSynth-rendered drum fixture: real GM drum sounds, onsets where the MIDI says, no
ring-over between items, and a missing library skips locally but fails under CI."""

from __future__ import annotations

import numpy as np
import pytest

from midigroove_poc.grid import DrumEvents

from . import conftest
from .conftest import require_fluidsynth

SR = 44100


@pytest.fixture(scope="module")
def fluid():
    require_fluidsynth()
    from . import fluid

    return fluid


def test_hits_sound_where_the_midi_says(fluid) -> None:
    hits = DrumEvents.from_hits([(0.25, 36, 110), (0.75, 38, 100)])
    audio = fluid.render_gm_drums(hits, 1.25, SR, kit=0)
    assert audio.shape == (int(1.25 * SR),) and audio.dtype == np.float32
    assert np.abs(audio[: int(0.25 * SR)]).max() < 1e-3  # silence (dither) before the first hit
    start = int(0.25 * SR)
    first = start + int(np.argmax(np.abs(audio[start:]) > 1e-3))
    assert first - start < 3 * 64, first - start  # within FluidSynth's block quantisation + attack
    assert 0.02 < np.abs(audio).max() < 1.0
    other_kit = fluid.render_gm_drums(hits, 1.25, SR, kit=1)
    assert np.abs(other_kit - audio).max() > 0.01  # "Pop Kit" is another GM kit


def test_a_cymbal_does_not_ring_into_the_next_item(fluid) -> None:
    fluid.render_gm_drums(DrumEvents.from_hits([(0.05, 49, 127), (0.1, 57, 127)]), 0.2, SR)  # cut while ringing
    after = fluid.render_gm_drums(DrumEvents.from_hits([(0.5, 36, 100)]), 0.6, SR)
    assert np.abs(after[: int(0.5 * SR)]).max() < 1e-3  # only dither-level noise before its own hit


def test_missing_fluidsynth_skips_with_the_install_command_but_fails_under_ci(monkeypatch) -> None:
    monkeypatch.setattr(conftest, "fluidsynth_missing", lambda: "no libfluidsynth; install it: apt-get install -y libfluidsynth3")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y libfluidsynth3"):
        require_fluidsynth()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y libfluidsynth3"):
        require_fluidsynth()
