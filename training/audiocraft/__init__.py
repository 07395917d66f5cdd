"""training.audiocraft: train AudioCraft models (e.g. a compression model) on your own audio.

``python -m training.audiocraft <command>`` — each command is a thin CLI over one module:

==========  ===============  ===========================================================
command     module           what it does
==========  ===============  ===========================================================
fetch-fma   ``fma``          the first N tracks of fma_small.zip by HTTP range requests
prepare     ``egs``          audio → 32 kHz mono 10 s segments → egs/{train,valid}/data.jsonl
dset        ``dset``         config/dset/audio/<name>.yaml in the AudioCraft checkout
launch      ``launch``       pre-flight checks, then ``python -m dora -P audiocraft run …``
xp          ``xp``           newest experiment: files, last epoch's metrics, loss plot
==========  ===============  ===========================================================

The RunPod notebooks (``notebooks/01_…``, ``02_…``) call these functions cell by cell;
``notebook.py`` holds the few notebook-only steps (installs, clone, artifact checks).
"""
