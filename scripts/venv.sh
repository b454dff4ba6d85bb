#!/usr/bin/env bash
# Create the virtual environment the Makefile installs into: `scripts/venv.sh PYTHON DIR`.
# On Debian the interpreter cannot create one until python3-venv is installed (ensurepip is a
# separate package there): as root this installs it, otherwise it says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/apt.sh
. scripts/apt.sh
LOG_NAME=venv
PYTHON=${1:?usage: $0 PYTHON DIR}
DIR=${2:?usage: $0 PYTHON DIR}
MIN_PYTHON=3.11

if ! command -v "$PYTHON" >/dev/null; then
  install_packages "$PYTHON is missing" python3 python3-venv
fi
if ! "$PYTHON" -c "import sys; sys.exit(sys.version_info < (${MIN_PYTHON/./, }))"; then
  log "$PYTHON is $("$PYTHON" -V 2>&1); the project needs Python >= $MIN_PYTHON (make PYTHON=...)"
  exit 1
fi
if ! "$PYTHON" -m venv "$DIR" >/dev/null 2>&1; then
  rm -rf "$DIR"
  version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  case "$(command -v "$PYTHON")" in
    /usr/bin/*) install_packages "$PYTHON cannot create a virtual environment" \
                  python3-venv "python$version-venv" ;;
    *) log "$PYTHON cannot create a virtual environment: install its venv (ensurepip) support"
       exit 1 ;;
  esac
  "$PYTHON" -m venv "$DIR"
fi
