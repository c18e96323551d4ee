#!/usr/bin/env bash
# Set everything up, then run the main job: compile a model (default: a builder-made MobileNetV2)
# and run it bit-exactly on the emulated Cortex-M4, printing the memory report and the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/vmcu run "$@" --target cortex-m4
