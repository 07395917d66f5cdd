"""Drum note maps: Roland TD-17 (E-GMD / Groove) MIDI pitches → GrooVAE classes and fine lanes.

E-GMD uses the Groove MIDI Dataset's TD-11 note map (every pad zone has its own note). The
drumgrid baseline uses GrooVAE's 9 classes (:data:`GROOVAE_CLASSES`); the expressive grid keeps
14 :data:`FINE_LANES` apart because they sound different. Every lane but ``other`` lies inside one
class (:data:`LANE_TO_GROOVAE`); :data:`SUSTAIN_LANES` get a decay column. The pitch tables:
README.md, "midigroove_poc", **Drum mapping**.
"""

from __future__ import annotations

__all__ = [
    "FINE_LANES",
    "GROOVAE_CLASSES",
    "GROOVAE_PITCHES",
    "LANE_PITCHES",
    "LANE_TO_GROOVAE",
    "OTHER_LANE",
    "SUSTAIN_LANES",
    "TD17_PITCHES",
    "pitch_to_groovae",
    "pitch_to_lane",
]

GROOVAE_CLASSES: list[str] = [
    "kick", "snare", "closed_hat", "open_hat", "low_tom", "mid_tom", "high_tom", "crash", "ride",
]  # fmt: skip

FINE_LANES: list[str] = [
    "kick", "snare_head", "snare_rim", "snare_xstick", "hat_closed", "hat_open", "hat_pedal",
    "tom_high", "tom_mid", "tom_low", "crash", "ride_bow", "ride_bell", "other",
]  # fmt: skip

SUSTAIN_LANES: list[str] = ["hat_open", "crash", "ride_bow", "ride_bell"]

OTHER_LANE: int = FINE_LANES.index("other")

#: The 22 notes a TD-17 (Groove / E-GMD note assignment) sends, with the pad zone each means.
TD17_PITCHES: dict[int, str] = {
    36: "kick",
    38: "snare head", 40: "snare rim", 37: "snare x-stick",
    48: "tom 1 head", 50: "tom 1 rim",
    45: "tom 2 head", 47: "tom 2 rim",
    43: "tom 3 head", 58: "tom 3 rim",
    46: "hi-hat open bow", 26: "hi-hat open edge",
    42: "hi-hat closed bow", 22: "hi-hat closed edge", 44: "hi-hat pedal",
    49: "crash 1 bow", 55: "crash 1 edge", 57: "crash 2 bow", 52: "crash 2 edge",
    51: "ride bow", 59: "ride edge", 53: "ride bell",
}  # fmt: skip

#: GrooVAE class name → pitches (TD-17 notes plus the GM extras 35 and 41).
GROOVAE_PITCHES: dict[str, tuple[int, ...]] = {
    "kick": (36, 35),
    "snare": (38, 40, 37),
    "closed_hat": (42, 22, 44),
    "open_hat": (46, 26),
    "low_tom": (43, 58, 41),
    "mid_tom": (45, 47),
    "high_tom": (48, 50),
    "crash": (49, 55, 57, 52),
    "ride": (51, 59, 53),
}

#: Fine lane name → pitches; ``other`` takes every pitch not listed.
LANE_PITCHES: dict[str, tuple[int, ...]] = {
    "kick": (36, 35),
    "snare_head": (38,),
    "snare_rim": (40,),
    "snare_xstick": (37,),
    "hat_closed": (42, 22),
    "hat_open": (46, 26),
    "hat_pedal": (44,),
    "tom_high": (48, 50),
    "tom_mid": (45, 47),
    "tom_low": (43, 58, 41),
    "crash": (49, 55, 57, 52),
    "ride_bow": (51, 59),
    "ride_bell": (53,),
    "other": (),
}

_PITCH_TO_GROOVAE: dict[int, int] = {
    p: GROOVAE_CLASSES.index(name) for name, ps in GROOVAE_PITCHES.items() for p in ps
}
_PITCH_TO_LANE: dict[int, int] = {
    p: FINE_LANES.index(name) for name, ps in LANE_PITCHES.items() for p in ps
}


def _lane_class(lane: str) -> int | None:
    """The GrooVAE class that holds all of a lane's pitches (None for ``other``)."""
    classes = {_PITCH_TO_GROOVAE[p] for p in LANE_PITCHES[lane]}
    if len(classes) > 1:  # pragma: no cover - guarded by the tables above
        raise AssertionError(f"lane {lane!r} spans several GrooVAE classes: {classes}")
    return classes.pop() if classes else None


#: Fine lane index → GrooVAE class index (None for ``other``).
LANE_TO_GROOVAE: list[int | None] = [_lane_class(lane) for lane in FINE_LANES]


def pitch_to_groovae(pitch: int) -> int | None:
    """GrooVAE class index of a drum MIDI pitch, or None if the baseline drops it."""
    return _PITCH_TO_GROOVAE.get(int(pitch))


def pitch_to_lane(pitch: int) -> int:
    """Fine lane index of a drum MIDI pitch (:data:`OTHER_LANE` for pitches not in the map)."""
    return _PITCH_TO_LANE.get(int(pitch), OTHER_LANE)
