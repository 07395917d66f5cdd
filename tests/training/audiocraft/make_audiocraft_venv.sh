#!/usr/bin/env bash
# Build a throw-away venv in which AudioCraft 1.3.0 really trains on CPU (used by
# `make test-audiocraft`). Nothing here touches the project's own .venv.
#
# AudioCraft 1.3.0 pins torch 2.1 / xformers < 0.0.23 / av 11, none of which install here, so it comes
# in with --no-deps next to the project's torch pin and the libraries it imports. Three fixes, in this
# venv only:
#   * PyPI's torchaudio is a CUDA build; deleting lib/_torchaudio.abi3.so lets the pure-torch
#     transforms AudioCraft uses import on CPU.
#   * The wheel lacks config/; Dora reads ../config next to audiocraft/train.py, so the sdist's
#     config/ is linked as site-packages/config.
#   * The generate stage pipes audio through ffmpeg: imageio-ffmpeg's binary is linked as bin/ffmpeg.
# Everything else comes from requirements/audiocraft.lock.txt (exact versions, `make lock`) and
# torch from the project's pin in constraints.txt.
set -euo pipefail
VENV=${1:?usage: make_audiocraft_venv.sh VENV_DIR}
PYTHON=${PYTHON:-python3}
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
LOCK="$REPO/requirements/audiocraft.lock.txt"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install -q $(grep -E '^(pip|wheel)==' "$LOCK")
"$PY" -m pip install -q --no-deps "audiocraft==1.3.0" "xformers==0.0.35" "torchaudio==2.11.0"
"$PY" -m pip install -q -r "$LOCK" -c "$REPO/constraints.txt" torch
SP=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -f "$SP/torchaudio/lib/_torchaudio.abi3.so"
SDIST=$(mktemp -d)
"$PY" -m pip download -q --no-deps --no-binary :all: "audiocraft==1.3.0" -d "$SDIST"
mkdir -p "$VENV/audiocraft-sdist"
tar -xzf "$SDIST"/audiocraft-1.3.0.tar.gz -C "$VENV/audiocraft-sdist" --strip-components=1
rm -rf "$SDIST"
ln -sfn "$(cd "$VENV/audiocraft-sdist/config" && pwd)" "$SP/config"
ln -sf "$("$PY" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" "$VENV/bin/ffmpeg"
"$PY" -c "import audiocraft, dora, xformers.ops; print('audiocraft', audiocraft.__version__, 'ready in', '$VENV')" 2>/dev/null
touch "$VENV/.installed"
