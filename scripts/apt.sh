# Sourced by the scripts here: install Debian packages as root, or say exactly what to run.

log() { echo "${LOG_NAME:-setup}: $*" >&2; }

install_packages() { # install_packages WHY PACKAGE...
  local why=$1; shift
  if [ "$(id -u)" != 0 ]; then
    log "$why; as root, run: apt-get install $*"
    log "(or run this as root: it installs them itself)"
    exit 1
  fi
  log "$why: installing $* from Debian's packages"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}
