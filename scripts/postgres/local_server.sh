#!/bin/bash
# A throwaway PostgreSQL server on this machine, for sweeps whose workers share a study on a database
# server (`hydra.sweeper.storage=postgresql+psycopg2://...`) and for the tests that use one.
#
#   sudo scripts/postgres/local_server.sh up       # install if missing, initdb, start, create the database
#   sudo scripts/postgres/local_server.sh status   # is it answering
#   sudo scripts/postgres/local_server.sh down     # stop it and delete its data
#
# Needs root (the server runs as the `postgres` user; Debian/Ubuntu: `apt-get install postgresql` when
# initdb is missing). The cluster lives in $PG_DIR (default /tmp/embedding-trainer-postgres), listens on
# 127.0.0.1:$PG_PORT (default 55432) with trust authentication, and holds the database `optuna`:
#   postgresql+psycopg2://postgres@127.0.0.1:55432/optuna
# `up` on a running server only checks it.
set -euo pipefail

PG_DIR=${PG_DIR:-/tmp/embedding-trainer-postgres}
PG_PORT=${PG_PORT:-55432}
DATA=$PG_DIR/data

say() { echo "[local_server] $*"; }
fail() { echo "[local_server] error: $*" >&2; exit 1; }
as_postgres() { runuser -u postgres -- "$@"; }

bin_dir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return; }
  done
  command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return; }
  return 1
}

install_packages() {
  bin_dir >/dev/null && return
  command -v apt-get >/dev/null || fail "initdb is missing and apt-get is not available: install PostgreSQL yourself."
  say "installing postgresql with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

answering() { as_postgres "$(bin_dir)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

up() {
  [ "$(id -u)" -eq 0 ] || fail "run as root (sudo $0 up): the server runs as the postgres user."
  install_packages
  id postgres >/dev/null 2>&1 || fail "no postgres user (the postgresql package creates it)."
  local bin; bin=$(bin_dir)
  if answering; then say "running on 127.0.0.1:$PG_PORT"; return; fi
  mkdir -p "$PG_DIR" && chown postgres "$PG_DIR"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$DATA" -U postgres -A trust >/dev/null
  fi
  as_postgres "$bin/pg_ctl" -D "$DATA" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=200" start >/dev/null
  as_postgres "$bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -tc \
    "SELECT 1 FROM pg_database WHERE datname = 'optuna'" | grep -q 1 \
    || as_postgres "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres optuna
  say "running on 127.0.0.1:$PG_PORT: postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/optuna"
}

down() {
  local bin; bin=$(bin_dir) || return 0
  if [ -f "$DATA/postmaster.pid" ]; then
    as_postgres "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true
  fi
  rm -rf "$PG_DIR"
  say "stopped; $PG_DIR removed"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if answering; then say "answering on 127.0.0.1:$PG_PORT"; else say "not answering"; exit 1; fi ;;
  *) echo "usage: $0 up|status|down" >&2; exit 2 ;;
esac
