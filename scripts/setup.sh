#!/usr/bin/env bash
# Set up ulmfit on a fresh machine: a virtual environment in .venv with the CPU build of PyTorch,
# the package and its test tools, and jemalloc (the allocator the training commands use when present).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    # macOS's own python3 is 3.9: pip would only say it finds no matching torch
    echo "error: ulmfit needs Python 3.10 or newer, and $PY is $( ("$PY" -V || echo 'not found') 2>/dev/null);" \
         "name another with PYTHON, e.g. PYTHON=python3.12 bash scripts/setup.sh" >&2
    exit 1
fi

# jemalloc: optional, ~1.5x faster training on large vocabularies with glibc's malloc (see BENCHMARKS.md).
if ! ls /usr/lib/*/libjemalloc.so.2 >/dev/null 2>&1 && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q libjemalloc2 >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libjemalloc2 >/dev/null 2>&1)) \
        || echo "note: could not install libjemalloc2; training will use the system allocator"
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first and pinned: an unpinned resolve would pull a multi-GB CUDA build.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "ulmfit installed in $(pwd)/.venv"
