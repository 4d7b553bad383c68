#!/usr/bin/env bash
# Installs what rttag needs on Debian/Ubuntu (Python 3.10+): system libraries and a virtual
# environment in .venv with rttag installed in it.
#   ./setup.sh         runtime only: rttag listen / tag / devices
#   ./setup.sh --dev   also training, export, evaluation and the test tools (+ PulseAudio for
#                      the end-to-end device test)
set -euo pipefail
cd "$(dirname "$0")"
dev=0
[ "${1:-}" = "--dev" ] && dev=1

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
pkgs="libportaudio2 libsndfile1"
python3 -c "import ensurepip, venv" 2>/dev/null || pkgs="$pkgs python3-venv"
[ "$dev" = 1 ] && pkgs="$pkgs pulseaudio pulseaudio-utils libasound2-plugins"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
  # torch 2.13.0: a CPU build is on disk on the project's machines; elsewhere pip fetches it.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[train,eval,dev]"
  .venv/bin/python -m pip install -q --no-deps "silero-vad==6.2.3"
else
  .venv/bin/python -m pip install -q -e .
fi
echo "setup.sh: ready (.venv/bin/rttag)" >&2
