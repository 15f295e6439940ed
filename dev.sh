#!/usr/bin/env bash
# Set up a virtual environment and run spacelive: `./dev.sh serve [ARGS]` or `./dev.sh test [ARGS]`.
# Idempotent: a second run reuses the environment and only installs what changed.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${SPACELIVE_VENV:-.venv}
PYTHON=${PYTHON:-python3}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
      # Debian ships venv separately.
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      else
        echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv)" >&2
        exit 1
      fi
      rm -rf "$VENV"
      "$PYTHON" -m venv "$VENV"
    fi
  fi
  "$VENV/bin/python" - <<'PY'
import sys
if sys.version_info[:2] not in ((3, 11), (3, 12)):
    sys.exit(f"spacelive needs Python 3.11 or 3.12, found {sys.version.split()[0]}")
PY
  "$VENV/bin/python" -m pip install -q --upgrade pip
}

ensure_speech_tools() {
  # Speech synthesis with exact phoneme timing (training corpus, teacher tests): espeak-ng,
  # flite, and mbrola with its voices from Debian's contrib and non-free components; the word
  # lists the corpus's sentences are drawn from.
  local voices="mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 mbrola-de1 mbrola-fr1 mbrola-es1"
  local words="wamerican wngerman wfrench wspanish"
  if command -v espeak-ng >/dev/null && command -v mbrola >/dev/null \
     && command -v flite >/dev/null && [ -d /usr/share/mbrola/us3 ] \
     && [ -f /usr/share/dict/american-english ] && [ -f /usr/share/dict/spanish ]; then
    return
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "warning: espeak-ng, mbrola (+ voices) and flite are missing; tests that need them skip" >&2
    return
  fi
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed -i '/^Components:/{/contrib/!s/$/ contrib non-free/}' /etc/apt/sources.list.d/debian.sources
  fi
  if [ -f /etc/apt/sources.list ]; then
    sed -i '/^deb .*debian/{/contrib/!s/ main/ main contrib non-free/}' /etc/apt/sources.list
  fi
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng mbrola $voices flite $words >/dev/null
}

ensure_browser() {
  # The browser test drives Debian's chromium through its chromedriver (Selenium).
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    return
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "warning: chromium and chromium-driver are missing; the browser test skips" >&2
    return
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
}

install() {  # $1: extras, e.g. "" or "train,dev"
  local spec="."
  [ -n "$1" ] && spec=".[$1]"
  "$VENV/bin/python" -m pip install -q -e "$spec"
  # mediapipe's declared dependencies pull jax and a GUI OpenCV (~1.5 GB) that face mesh does not
  # need; its real runtime needs are in pyproject.toml.
  "$VENV/bin/python" -m pip install -q --no-deps "mediapipe==0.10.21"
}

lint_imports() {
  # import-linter reads the import graph of the installed tree: in the editable install,
  # server/, client/, models/, export/ and training/ are mapped into spacelive.* from outside
  # spacelive/, where its graph builder does not look. So: install a copy and lint that.
  local site repo venv
  repo=$PWD
  venv=$(cd "$VENV" && pwd)
  site=$(mktemp -d)
  if ! "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation --target "$site" . \
       >"$site.log" 2>&1; then
    cat "$site.log" >&2
    exit 1
  fi
  (cd "$site" && PYTHONPATH="$site" "$venv/bin/lint-imports" --no-cache --config "$repo/pyproject.toml")
  rm -rf "$site" "$site.log"
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  serve)
    ensure_venv
    install ""
    exec "$VENV/bin/spacelive" serve "$@"
    ;;
  test)
    ensure_speech_tools
    ensure_browser
    ensure_venv
    install "train,dev"
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    lint_imports
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: ./dev.sh serve [spacelive serve options] | ./dev.sh test [pytest options]" >&2
    exit 2
    ;;
esac
