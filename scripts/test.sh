#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the test suite.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REALNET_SETUP_BUILD=none "$here/setup.sh"
source "$here/env.sh"
cd "$(dirname "$here")"
cargo test --workspace "$@"
