#!/usr/bin/env bash
# Runs a command with the real dependencies the tests need, starting what is
# missing and stopping only what it started:
#   Cassandra on 127.0.0.1:9042 (deploy/cassandra/cassandra.sh, from Maven Central)
#   Redis on 127.0.0.1:6379 (redis-server from Debian's packages, installed if missing)
#   Chromium (Debian's package, installed if missing) for the browser tests
# It exports VT_CASSANDRA_HOSTS and VT_REDIS_URL for the command.
#
#   deploy/with-deps.sh make unit
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=$(mktemp -d /tmp/volcanion-deps.XXXXXX)
started_cassandra="" started_redis=""

log() { echo "with-deps: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cleanup() {
  if [ -n "$started_redis" ]; then
    kill "$(cat "$state/redis.pid")" 2>/dev/null || true
    log "stopped the Redis it started"
  fi
  if [ -n "$started_cassandra" ]; then
    "$here/cassandra/cassandra.sh" stop "$state/cassandra" || true
  fi
  rm -rf "$state"
}
trap cleanup EXIT

# Chromium, driven headless by the browser tests (never a downloaded browser).
if ! command -v chromium >/dev/null; then
  log "installing chromium from the OS packages"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

# promtool (Debian's prometheus package) checks the alert rules; only the
# tool is used.
if ! command -v promtool >/dev/null; then
  log "installing promtool (the prometheus package) from the OS packages"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# Redis
if ! port_open 6379; then
  if ! command -v redis-server >/dev/null; then
    log "installing redis-server from the OS packages"
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
  fi
  redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes \
    --pidfile "$state/redis.pid" --logfile "$state/redis.log" --dir "$state"
  for _ in $(seq 1 50); do port_open 6379 && break; sleep 0.1; done
  port_open 6379 || { log "redis-server did not start"; cat "$state/redis.log" >&2; exit 1; }
  started_redis=1
  log "started Redis on 127.0.0.1:6379"
fi
export VT_REDIS_URL=${VT_REDIS_URL:-redis://127.0.0.1:6379/0}

# Cassandra
if ! port_open 9042; then
  # A node for tests only, dropped when they end: its schema tables are not
  # synced to disk on each change (unsafesystem), which halves the time a
  # test takes to make and drop its keyspace.
  CASSANDRA_JVM_OPTS="-Dcassandra.unsafesystem=true ${CASSANDRA_JVM_OPTS:-}" \
    "$here/cassandra/cassandra.sh" start "$state/cassandra"
  started_cassandra=1
fi
export VT_CASSANDRA_HOSTS=${VT_CASSANDRA_HOSTS:-127.0.0.1:9042}

"$@"
