"""Datasets for the four music models — the names this module always offered, re-exported from
where they now live: :mod:`training.music.datasets`, :mod:`training.music.features`,
:mod:`training.music.labels` and :mod:`training.music.cache`.

Folders under ``--datasets-dir``: ``training/audio/`` (+ ``labels.csv``), ``training/midi/``,
``training/maestro/``, ``training/groove/``. Errors: :class:`MusicDatasetError`,
:class:`LabelFileError`, :class:`ConstantDataError`, :class:`MidiReadError`. Details: README.md.
"""

from __future__ import annotations

# The constants outside __all__ (CACHE_DIRNAME, FEATURE_VERSION, EMBEDDING_GRID/SIGMA, the drum
# classes) were importable from here too, so they stay.
from .cache import CACHE_DIRNAME  # noqa: F401
from .datasets import (
    ConstantDataError,
    DynamicsDataset,
    EmotionDataset,
    GrooveDataset,
    MelodyDataset,
    MusicDataset,
)
from .features import (  # noqa: F401
    CYMBALS,
    DB_FLOOR,
    DEFAULT_AUDIO_DURATION,
    DYNAMICS_FEATURE_NAMES,
    FEATURE_VERSION,
    GROOVE_FEATURE_NAMES,
    HIHAT,
    HIHAT_OPEN,
    HOP_LENGTH,
    KICK,
    MIDI_EXTENSIONS,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    SNARE,
    TOMS,
    MidiReadError,
    NoteArrays,
    dynamics_features,
    groove_features,
    load_midi,
    mel_band_centers,
    mel_features,
    midi_notes,
    pitch_counts,
    sustain_intervals,
)
from .labels import (  # noqa: F401
    EMBEDDING_DIM,
    EMBEDDING_GRID,
    EMBEDDING_SIGMA,
    LabelFileError,
    MusicDatasetError,
    decode_emotion_embedding,
    deam_to_unit,
    emotion_embedding,
    emotion_embeddings,
    read_drum_labels,
    read_emotion_csv,
    read_emotion_json,
)

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "N_MELS",
    "DB_FLOOR",
    "DEFAULT_AUDIO_DURATION",
    "MIDI_EXTENSIONS",
    "EMBEDDING_DIM",
    "DYNAMICS_FEATURE_NAMES",
    "GROOVE_FEATURE_NAMES",
    "MusicDatasetError",
    "LabelFileError",
    "ConstantDataError",
    "MidiReadError",
    "NoteArrays",
    "MusicDataset",
    "EmotionDataset",
    "MelodyDataset",
    "DynamicsDataset",
    "GrooveDataset",
    "deam_to_unit",
    "emotion_embedding",
    "emotion_embeddings",
    "decode_emotion_embedding",
    "mel_band_centers",
    "mel_features",
    "load_midi",
    "midi_notes",
    "sustain_intervals",
    "pitch_counts",
    "dynamics_features",
    "groove_features",
    "read_emotion_csv",
    "read_emotion_json",
    "read_drum_labels",
]
