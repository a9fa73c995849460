#!/usr/bin/env bash
# Create bench/.venv-peers: fastai 2.8.12 (the peer that bench/loop_overhead.py --peer compares
# against) beside the same torch and torchvision versions as the main environment.
#
# Idempotent: a marker file records what was installed; a second run with the same versions does
# nothing. Usage: bash bench/peers.sh [MAIN_PYTHON]   (default: .venv/bin/python)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
MAIN_PY="${1:-$ROOT/.venv/bin/python}"
PYTHON="${PYTHON:-python3}"
PEERS="$HERE/.venv-peers"
FASTAI="fastai==2.8.12"

# The distribution versions (without a local "+cu130" tag) of the main environment's torch.
read -r TORCH TORCHVISION < <("$MAIN_PY" -c "
from importlib.metadata import version
print(version('torch').split('+')[0], version('torchvision').split('+')[0])")
WANT="$FASTAI torch==$TORCH torchvision==$TORCHVISION"

if [[ -x "$PEERS/bin/python" && -f "$PEERS/.complete" && "$(cat "$PEERS/.complete")" == "$WANT" ]]; then
    echo "peers.sh: bench/.venv-peers already has $WANT" >&2
    exit 0
fi

echo "peers.sh: installing $WANT into bench/.venv-peers (first run only: about 100 s and 6 GB)" >&2
start=$(date +%s)
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
rm -rf "$PEERS"
# pip's log goes to a file, shown only if the install fails.
if ! { "$PYTHON" -m venv "$PEERS" \
       && "$PEERS/bin/python" -m pip install -q --upgrade pip \
       && "$PEERS/bin/python" -m pip install -q $WANT; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "peers.sh: installing $WANT failed (log above)" >&2
    exit 1
fi
echo "$WANT" > "$PEERS/.complete"
echo "peers.sh: done in $(( $(date +%s) - start )) s" >&2
