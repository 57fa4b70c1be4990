#!/usr/bin/env bash
# Set up everything the grader needs on a fresh Debian machine (Python 3.11, root or sudo):
# the Debian packages (bubblewrap sandbox, real FashionMNIST), the virtual environment at
# .venv/ with torch, torchvision, timm and the project. Safe to run again; it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
  esac
done

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------------
packages=()
command -v bwrap >/dev/null || packages+=(bubblewrap)
[ -e /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || packages+=(dataset-fashion-mnist)
if [ "$want_test" = 1 ]; then
  command -v chromium >/dev/null || packages+=(chromium)
  command -v npm >/dev/null || packages+=(npm)
fi
if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  log "installing Debian packages: ${packages[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# --- the sandbox's user -----------------------------------------------------------------------
# Jobs run as the system user grader-sandbox, never as host root (scripts/sandbox-user.sh).
scripts/sandbox-user.sh

# --- Python environment ----------------------------------------------------------------------
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
if ! .venv/bin/python -c 'import torch, torchvision' 2>/dev/null; then
  log "installing torch 2.14.1 and torchvision 0.29.1 (large; takes a minute or two)"
  pip install torch==2.14.1 torchvision==0.29.1
fi
extras="."
[ "$want_test" = 1 ] && extras=".[test]"
log "installing the project ($extras)"
# A stale cnn_grader.egg-info in the checkout (from an older install) would shadow the installed
# metadata for anything run from here, hiding entry points added since.
rm -rf cnn_grader.egg-info
pip install -e "$extras"

# --- test tools from npm ----------------------------------------------------------------------
# axe-core, which tests/leaderboard/test_accessibility.py loads into every page (not committed).
if [ "$want_test" = 1 ] && [ ! -f .tools/node_modules/axe-core/axe.min.js ]; then
  log "installing axe-core 4 into .tools/ (npm)"
  npm install --prefix .tools --no-audit --no-fund --silent axe-core@4
fi
log "ready: $(.venv/bin/grader --version)"
