#!/usr/bin/env bash
# Benchmark containerarchive against restic and borg (Debian packages): bash bench/run.sh [--smoke]
set -euo pipefail
cd "$(dirname "$0")/.."
. .ci/setup
if ! command -v restic >/dev/null || ! command -v borg >/dev/null || ! command -v zstd >/dev/null \
  || ! ls /usr/lib/postgresql/*/bin/pg_dump >/dev/null 2>&1; then
  step "installing restic, borg, zstd and postgresql (Debian packages; the pg set runs a private cluster)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic borgbackup zstd postgresql
fi
if ! python -c 'import containerarchive' 2>/dev/null; then
  step "installing containerarchive (pip install .)"
  python -m pip install -q --disable-pip-version-check .
fi
python bench/harness.py "$@"
