#!/usr/bin/env bash
# README command 1: install what is missing, build (release), and run the built-in default job:
# `metatrain local` on cluster.yaml, a coordinator + 2 workers on this machine, then the adaptation summary.
# Extra arguments go to `metatrain local` (e.g. --workers 4 --iterations 10).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
swift build -c release --product metatrain
exec .build/release/metatrain local --config cluster.yaml "$@"
