#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the main job.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh"
source "$here/env.sh"
exec "$(dirname "$here")/target/release/realnet" demo "$@"
