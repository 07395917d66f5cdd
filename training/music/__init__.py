"""training.music: four small music models (emotion, melody, dynamics, groove), their dataset
loaders, and the scripts that fetch the data and train them.

Without emotion labels the models learn a *continuation* target (the second half's features from
the first half's), so nothing is ever trained on a constant target. This package imports nothing
at import time (``--help`` stays fast). Models, data layouts and modules: README.md, "The
music-model suite".
"""
