#!/usr/bin/env bash
# Install into .venv and run the whole test suite (README command 2; CI runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
# Browser for the HTML report test; skipped with a clear message if it cannot be had.
if ! command -v chromium >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) 2>/dev/null \
    || echo "note: chromium could not be installed; the browser test will be skipped" >&2
fi
# Java for the Spark snippet's test (pyspark starts a JVM); skipped with a clear message
# if it cannot be had.
if ! command -v java >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq default-jre-headless >/dev/null) 2>/dev/null \
    || echo "note: Java could not be installed; the Spark test will be skipped" >&2
fi
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/python -m pytest "$@"
