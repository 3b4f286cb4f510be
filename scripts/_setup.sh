# Shared by demo.sh and test.sh: create .venv and install the project, one line per step.
# Usage: setup_venv EXTRAS   (e.g. "report" or "test")
step() { echo "==> $*" >&2; }

setup_venv() {
  local extras="$1"
  if [ -x .venv/bin/python ]; then
    step "using the existing .venv ($(.venv/bin/python --version))"
  else
    step "creating .venv with $(python3 --version) (python3 -m venv .venv)"
    python3 -m venv .venv
  fi
  step "upgrading pip inside .venv"
  .venv/bin/python -m pip install --progress-bar on --upgrade pip
  step "installing detector and its [$extras] extras into .venv (pip; about a minute on a fresh machine, seconds with a warm cache)"
  .venv/bin/python -m pip install --progress-bar on -e ".[$extras]"
  step "installed: $(.venv/bin/python -m pip list --format=freeze 2>/dev/null | wc -l) packages in .venv"
}
