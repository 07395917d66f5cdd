"""training.music: four small music models, their dataset loaders, and the scripts that fetch
the data and train them.

=========  ===================  ==============================  ==========================  ====================================  ====
model      class                data (under ``--datasets-dir``)  inputs [F]                  targets [Y]                           loss
=========  ===================  ==============================  ==========================  ====================================  ====
emotion    EmotionRecognizer    ``training/audio/`` DEAM-style   128 mel bands, time-        (valence, arousal) in [-1, 1] from    MSE
                                audio + ``labels.csv``           averaged, dB → [-1, 1]      labels.csv (DEAM 1-9 → (x-5)/4) [2]
melody     MelodyTransformer    ``training/midi/`` MIDI (Lakh)   128-pitch note              with ``emotion_labels.json``: 64-dim  MSE
                                + ``emotion_labels.json`` opt.   distribution (non-drum)     emotion_embedding(v, a) [64]; else
                                                                                             2nd-half pitch distribution [128]
dynamics   DynamicsEngine       ``training/maestro/`` MAESTRO    16 velocity / duration /    the same 16 of the 2nd half of the    MSE
                                MIDI                             density / pedal stats       piece (input: 1st half) [16]
                                                                 (1st half of the piece)
groove     GroovePredictor      ``training/groove/`` Groove      32 timing / per-drum /      ``drum_labels.json`` values [K], else MSE
                                MIDI drums + ``drum_labels``     syncopation / tempo stats   the same 32 of the 2nd half of the
                                ``.json`` opt.                                               bars (input: 1st half) [32]
=========  ===================  ==============================  ==========================  ====================================  ====

Modules:

* :mod:`training.music.datasets` — ``EmotionDataset``, ``MelodyDataset``, ``DynamicsDataset``,
  ``GrooveDataset`` (folder → arrays, continuation targets, skipped files, ``synthetic()``);
  :mod:`training.music.features` — the per-file feature functions with their exact formulas;
  :mod:`training.music.labels` — the label files and ``emotion_embedding``;
  :mod:`training.music.cache` — the feature cache. :mod:`training.music.data_loaders` re-exports
  all of them under the names it always had.
* :mod:`training.music.models` — the four ``nn.Module`` classes, ``MODEL_REGISTRY``
  (name → model class, dataset class, subfolder, loss), ``build_model``, ``build_loss``.
* ``training.music.download_datasets`` — fetch and organise the public datasets into that layout.
* ``training.music.train_all_models`` — ``python -m training.music.train_all_models --models NAME``.

Without emotion labels (MAESTRO; Lakh/Groove folders without a label file) the models learn a
*continuation* target — the second half's features from the first half's — so nothing is ever
trained on a constant target. This package imports nothing at import time (``--help`` stays fast).
"""
