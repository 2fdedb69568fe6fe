# Sourced by the other scripts: where realnet keeps its virtualenv (libtorch from the pip `torch`
# wheel) and the environment that makes tch build and link against it.
# Kept outside the clone so fresh clones and CI reuse it instead of downloading gigabytes again.
REALNET_CACHE="${REALNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/realnet}"
REALNET_VENV="$REALNET_CACHE/venv"
REALNET_TORCH_VERSION="2.11.0"   # must match tch 0.24.0
export REALNET_CACHE REALNET_VENV
export LIBTORCH_USE_PYTORCH=1
export PYTHON_SYS_EXECUTABLE="$REALNET_VENV/bin/python"
export PATH="$REALNET_VENV/bin:$PATH"
# The Debian libtorch must never be picked up by torch-sys.
unset LIBTORCH LIBTORCH_INCLUDE LIBTORCH_LIB
