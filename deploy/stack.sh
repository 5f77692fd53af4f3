#!/usr/bin/env bash
# The production topology on one machine, without Docker: 3 nats-server
# processes (built from the nats-server/v2 module) from nats.conf, Cassandra,
# Redis, 2 edges, 2 workers, a registry and 2 reporters, each its own process.
#
#   deploy/stack.sh up            build, start everything, print how to reach it
#   deploy/stack.sh down          stop everything it started
#   deploy/stack.sh start NAME    (re)start one process: nats1..3, edge1..2, workers1..2, registry, reporter1..2
#   deploy/stack.sh stop NAME [SIG]  stop one process (SIGTERM; SIGKILL for a crash)
#   deploy/stack.sh signal NAME SIG  only send a signal (STOP and CONT: a hung process)
#
# Settings: STACK_DIR (./data/stack), STACK_PORT_BASE (0: edges on 8081/8082,
# NATS on 4222-4224; a base of 100 moves every port up by 100),
# STACK_KEYSPACE (volcanion), STACK_EDGE_FLAGS (more flags for both edges).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dir=${STACK_DIR:-$root/data/stack}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
base=${STACK_PORT_BASE:-0}
keyspace=${STACK_KEYSPACE:-volcanion}
bin=$root/bin
redis=${STACK_REDIS_URL:-redis://127.0.0.1:6379/0}
mkdir -p "$dir"/{pids,logs}

log() { echo "stack: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 "${3:-100}"); do port_open "$1" && return 0; sleep 0.1; done
  log "$2 did not open port $1; see $dir/logs/$2.log"; tail -5 "$dir/logs/$2.log" >&2 || true; return 1
}

# wait_serving PORT NAME: the edge on PORT reports ingest, admin and reports
# ready (GET /api/v1/health/dependencies), within two minutes.
wait_serving() {
  local body="" ready part
  for _ in $(seq 1 240); do
    body=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /api/v1/health/dependencies HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && cat <&3) 2>/dev/null || true)
    ready=0
    for part in ingest admin reports; do
      echo "$body" | grep -Eq "\"$part\": ?\"ready\"" && ready=$((ready + 1))
    done
    [ "$ready" = 3 ] && return 0
    sleep 0.5
  done
  log "$2 does not find every dependency ready after 2 minutes: ${body##*$'\r\n\r\n'}"
  for n in registry reporter1 reporter2; do tail -3 "$dir/logs/$n.log" >&2 || true; done
  return 1
}

nats_client() { echo $((4222 + base + $1 - 1)); }
nats_route() { echo $((6222 + base + $1 - 1)); }
nats_urls() { echo "nats://127.0.0.1:$(nats_client 1),nats://127.0.0.1:$(nats_client 2),nats://127.0.0.1:$(nats_client 3)"; }
edge_port() { echo $((8081 + base + $1 - 1)); }

common() { # flags every service shares
  echo -nats-url "$(nats_urls)" -nats-creds "$dir/nats/$1.creds"
}
storage() {
  echo -storage cassandra -cassandra-hosts 127.0.0.1:9042 -cassandra-keyspace "$keyspace"
}

run() { # name, command...
  local name=$1; shift
  "$@" >> "$dir/logs/$name.log" 2>&1 &
  echo $! > "$dir/pids/$name.pid"
}

start() {
  local name=$1 i
  case $name in
    nats[123])
      i=${name#nats}
      NATS_SERVER_NAME=n$i NATS_LISTEN=127.0.0.1:$(nats_client "$i") NATS_HTTP=127.0.0.1:$((8222 + base + i - 1)) \
      NATS_CLUSTER_LISTEN=127.0.0.1:$(nats_route "$i") NATS_STORE_DIR=$dir/nats/js$i \
      NATS_ROUTE_1=nats://127.0.0.1:$(nats_route 1) NATS_ROUTE_2=nats://127.0.0.1:$(nats_route 2) NATS_ROUTE_3=nats://127.0.0.1:$(nats_route 3) \
        run "$name" "$bin/nats-server" -c "$dir/nats/nats.conf"
      wait_port "$(nats_client "$i")" "$name" ;;
    registry)
      run registry "$bin/registry" $(common registry) $(storage) -redis-url "$redis" -admin-tokens-file "$dir/admin-token" -metrics-listen 127.0.0.1:$((9102 + base)) ;;
    reporter[12])
      # Reporters share one queue group: run more to serve more.
      i=${name#reporter}
      run "$name" "$bin/reporter" $(common reporter) $(storage) -redis-url "$redis" -admin-tokens-file "$dir/admin-token" -metrics-listen 127.0.0.1:$((9103 + base + 3 * (i - 1))) ;;
    workers[12])
      i=${name#workers}
      run "$name" "$bin/workers" $(common workers) $(storage) -redis-url "$redis" -admin-tokens-file "$dir/admin-token" -metrics-listen 127.0.0.1:$((9104 + base + i - 1)) ;;
    edge[12])
      i=${name#edge}
      run "$name" "$bin/edge" $(common edge) -admin-tokens-file "$dir/admin-token" -redis-url "$redis" -rate-limit-edges 2 -http-listen 127.0.0.1:$(edge_port "$i") -metrics-listen 127.0.0.1:$((9106 + base + i)) ${STACK_EDGE_FLAGS:-}
      wait_port "$(edge_port "$i")" "$name" 1200 ;;
    *) log "unknown process $name"; exit 2 ;;
  esac
}

stop() { # name [signal]
  local f=$dir/pids/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-${2:-TERM}" "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

up() {
  log "building"
  go build -o "$bin/" ./edge/cmd/edge ./workers/cmd/workers ./registry/cmd/registry ./reporter/cmd/reporter ./deploy/allinone/cmd/natsauth
  go build -o "$bin/nats-server" github.com/nats-io/nats-server/v2
  # One admin token file for the edges, the registry, the reporter and the
  # workers (each re-reads it when it changes): they all check the admin
  # credential.
  [ -f "$dir/admin-token" ] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' | sed 's/^/vta_/' > "$dir/admin-token")
  "$bin/natsauth" init -dir "$dir/nats"
  cp nats.conf "$dir/nats/nats.conf"

  if ! port_open 6379; then
    command -v redis-server >/dev/null || { log "redis-server is missing: apt-get install redis-server"; exit 1; }
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --pidfile "$dir/pids/redis.pid" --logfile "$dir/logs/redis.log" --dir "$dir"
    touch "$dir/started-redis"; wait_port 6379 redis
  fi
  if ! port_open 9042; then
    deploy/cassandra/cassandra.sh start "$dir/cassandra"
    touch "$dir/started-cassandra"
  fi
  for n in 1 2 3; do start nats$n; done
  "$bin/registry" -migrate $(storage) -cassandra-replication "{'class': 'SimpleStrategy', 'replication_factor': 1}" >> "$dir/logs/migrate.log" 2>&1
  "$bin/registry" -provision -nats-url "$(nats_urls)" -nats-creds "$dir/nats/admin.creds" -stream-replicas 3 ${STACK_PROVISION_FLAGS:-} >> "$dir/logs/provision.log" 2>&1
  start registry; start reporter1; start reporter2; start workers1; start workers2
  start edge1; start edge2
  # Serving once every edge finds the registry and a reporter answering: on
  # a cold node the registry's start outlasts the edges', and a call before
  # it answers 503.
  for i in 1 2; do wait_serving "$(edge_port "$i")" "edge$i"; done
  cat <<MSG

The production topology is running (logs in $dir/logs):
  edges        http://127.0.0.1:$(edge_port 1)/api/v1  http://127.0.0.1:$(edge_port 2)/api/v1
  NATS         $(nats_urls)
  admin token  kept in $dir/admin-token
  partner NATS credentials: $bin/natsauth partner -dir $dir/nats -partner <partnerId>
Stop it with: make stack-down
MSG
}

down() {
  for n in edge1 edge2 workers1 workers2 registry reporter1 reporter2 nats1 nats2 nats3; do stop $n; done
  if [ -f "$dir/started-redis" ]; then kill "$(cat "$dir/pids/redis.pid")" 2>/dev/null || true; rm -f "$dir/started-redis" "$dir/pids/redis.pid"; fi
  if [ -f "$dir/started-cassandra" ]; then deploy/cassandra/cassandra.sh stop "$dir/cassandra"; rm -f "$dir/started-cassandra"; fi
  log "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  start) start "$2" ;;
  stop) stop "$2" "${3:-TERM}" ;;
  signal) kill "-$3" "$(cat "$dir/pids/$2.pid")" ;;
  *) echo "usage: $0 up|down|start NAME|stop NAME [SIGNAL]|signal NAME SIGNAL" >&2; exit 2 ;;
esac
