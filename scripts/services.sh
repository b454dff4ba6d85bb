#!/usr/bin/env bash
# Make sure the local services the worker, its demo and its tests need are running:
# RabbitMQ always, PostgreSQL with `--postgres`. Installs them from Debian's packages
# when run as root and missing (otherwise says what to install). Idempotent: a running
# service is left alone.
set -euo pipefail

WANT_PG=0
for arg in "$@"; do
  case "$arg" in
    --postgres) WANT_PG=1 ;;
    *) echo "usage: $0 [--postgres]" >&2; exit 2 ;;
  esac
done

PG_USER=${PROVISIONER_TEST_PG_USER:-provisioner}
PG_DB=${PROVISIONER_TEST_PG_DB:-provisioner_test}
WAIT_S=${SERVICES_WAIT_S:-120}

cd "$(dirname "$0")/.."
# shellcheck source=scripts/apt.sh
. scripts/apt.sh
LOG_NAME=services
PATH=$PATH:/usr/sbin:/sbin  # where Debian puts the servers' commands, off a user's PATH

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

as_root_or_say() { # as_root_or_say WHAT COMMAND: starting a service needs root
  if [ "$(id -u)" != 0 ]; then log "$1 is not running; as root, run: $2"; exit 1; fi
}

wait_for() { # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  local deadline=$((SECONDS + WAIT_S))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then log "$what did not come up within ${WAIT_S}s"; return 1; fi
    sleep 1
  done
}

ensure_rabbitmq() {
  command -v rabbitmq-server >/dev/null || install_packages "RabbitMQ is missing" rabbitmq-server
  if [ "$(id -u)" != 0 ] && port_open 5672; then return 0; fi  # a user cannot read the cookie
  if rabbitmq-diagnostics -q ping >/dev/null 2>&1; then return 0; fi
  as_root_or_say RabbitMQ "rabbitmq-server -detached (or: service rabbitmq-server start)"
  log "starting RabbitMQ"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_for "RabbitMQ" rabbitmq-diagnostics -q ping || { tail -n 30 /var/log/rabbitmq/*.log >&2 || true; exit 1; }
  # the node answers ping before the AMQP listener is ready
  wait_for "RabbitMQ AMQP listener" rabbitmq-diagnostics -q check_port_connectivity
  log "RabbitMQ is up"
}

ensure_postgres() {
  command -v pg_lsclusters >/dev/null || install_packages "PostgreSQL is missing" postgresql
  if [ "$(id -u)" != 0 ]; then
    pg_isready -q -h 127.0.0.1 || as_root_or_say PostgreSQL "bash scripts/services.sh --postgres"
    log "PostgreSQL answers; as a non-root user the role $PG_USER and database $PG_DB are assumed"
    return 0
  fi
  if ! pg_lsclusters -h | grep -q .; then
    local newest
    newest=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
    log "creating a PostgreSQL $newest cluster"; pg_createcluster "$newest" main >/dev/null
  fi
  local ver name
  read -r ver name _ < <(pg_lsclusters -h | head -n 1)
  if ! pg_lsclusters -h | head -n 1 | grep -q online; then
    log "starting PostgreSQL $ver/$name"; pg_ctlcluster "$ver" "$name" start
  fi
  wait_for "PostgreSQL" su postgres -c "psql -qAtc 'select 1'"
  su postgres -c "psql -qAtc \"select 1 from pg_roles where rolname='$PG_USER'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"create role $PG_USER login password '$PG_USER'\""
  su postgres -c "psql -qAtc \"select 1 from pg_database where datname='$PG_DB'\"" | grep -q 1 \
    || su postgres -c "createdb -O $PG_USER $PG_DB"
  log "PostgreSQL is up (postgresql://$PG_USER:***@127.0.0.1:5432/$PG_DB)"
}

ensure_rabbitmq
if [ "$WANT_PG" = 1 ]; then ensure_postgres; fi
