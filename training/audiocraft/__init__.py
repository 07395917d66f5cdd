"""training.audiocraft: train AudioCraft models (e.g. a compression model) on your own audio.

``python -m training.audiocraft <command>``: each command is a thin CLI over one module —
``fetch-fma`` (:mod:`.fma`), ``prepare`` (:mod:`.egs`), ``dset``, ``launch``, ``xp``. The RunPod
notebooks (``notebooks/01_…``, ``02_…``) call these functions cell by cell; ``notebook.py`` holds
the few notebook-only steps. The steps: README.md, "AudioCraft training through Dora".
"""
