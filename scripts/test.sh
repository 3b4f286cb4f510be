#!/usr/bin/env bash
# Install into .venv and run the whole test suite (README command 2; CI runs this).
#
#   bash scripts/test.sh [--with-browser] [--with-java] [PYTEST ARGS...]
#
# Two tests need a system package: the HTML report's browser test (Debian's chromium) and
# the Spark snippet's test (a Java runtime). This script installs them with apt-get only
# when asked (--with-browser, --with-java) or in CI (CI=true); otherwise those tests skip
# and say how to enable them. Every other argument goes to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_setup.sh

WITH_BROWSER=0
WITH_JAVA=0
if [ "${CI:-}" = "true" ]; then WITH_BROWSER=1; WITH_JAVA=1; fi
ARGS=()
for a in "$@"; do
  case "$a" in
    --with-browser) WITH_BROWSER=1 ;;
    --with-java) WITH_JAVA=1 ;;
    *) ARGS+=("$a") ;;
  esac
done

# install_system CMD PACKAGE WHY FLAG: apt-get PACKAGE when CMD is missing and we were asked.
install_system() {
  local cmd="$1" pkg="$2" why="$3" flag="$4" wanted="$5"
  if command -v "$cmd" >/dev/null 2>&1; then
    step "$cmd found ($(command -v "$cmd")): $why runs"
  elif [ "$wanted" = 1 ]; then
    local sudo=""
    [ "$(id -u)" != 0 ] && sudo="sudo"
    step "installing Debian's $pkg system-wide with ${sudo:+sudo }apt-get, for $why"
    if ! ($sudo apt-get update -qq && $sudo apt-get install -y "$pkg"); then
      step "note: $pkg could not be installed; $why will be skipped"
    fi
  else
    step "$cmd not found: $why will be skipped (bash scripts/test.sh $flag installs $pkg with apt-get)"
  fi
}
setup_venv test
install_system chromium chromium "the HTML report's browser test" --with-browser "$WITH_BROWSER"
install_system java default-jre-headless "the Spark snippet's test" --with-java "$WITH_JAVA"
export PATH="$PWD/.venv/bin:$PATH"
step "running the test suite (python -m pytest ${ARGS[*]:-}; a few minutes)"
exec .venv/bin/python -m pytest ${ARGS[@]+"${ARGS[@]}"}
