#!/usr/bin/env bash
# End-to-end persistence benchmarks, run by `make bench`:
#
#   deploy/bench.sh allinone   the all-in-one (bin/volcanion) with fsync on and
#                              off: 60 s of bulk load, then the drain
#   deploy/bench.sh stack      the production topology (make stack): the raw
#                              Cassandra ceiling, then the load and drain with
#                              one worker process and with two, each also with
#                              the workers held during the load (-hold), so the
#                              drain measures storing alone
#
# Settings: BENCH_DURATION (60s), BENCH_CONCURRENCY (8), BENCH_BULK (100),
# BENCH_OUT (./data/bench: JSON results and logs). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${BENCH_OUT:-$root/data/bench}
mkdir -p "$out"
dur=${BENCH_DURATION:-60s}
conc=${BENCH_CONCURRENCY:-8}
bulk=${BENCH_BULK:-100}
log() { echo "bench: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

go build -o bin/ ./deploy/allinone/cmd/drainbench ./deploy/allinone/cmd/volcanion

allinone() { # label, extra volcanion flags...
  local label=$1; shift
  local dir; dir=$(mktemp -d /tmp/volcanion-bench.XXXXXX)
  bin/volcanion -data-dir "$dir" -http-listen 127.0.0.1:18080 -nats-listen 127.0.0.1:14222 "$@" > "$out/$label.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do port_open 18080 && break; sleep 0.1; done
  port_open 18080 || { log "the all-in-one did not start; see $out/$label.log"; kill $pid; exit 1; }
  bin/drainbench -label "$label" -urls http://127.0.0.1:18080/api/v1 -admin-token "$(cat "$dir/admin-token")" \
    -nats-url nats://127.0.0.1:14222 -nats-creds "$dir/nats-auth/admin.creds" -duration "$dur" -concurrency "$conc" -bulk "$bulk" -json "$out/$label.json" || { kill $pid; exit 1; }
  kill $pid; wait $pid 2>/dev/null || true
  rm -rf "$dir"
}

stack() {
  export STACK_DIR=$out/stack
  rm -rf "$STACK_DIR" # a fresh topology each run (Cassandra's data is elsewhere, or shared)
  deploy/stack.sh up > "$out/stack-up.log" 2>&1 || { log "stack did not start; see $out/stack-up.log"; deploy/stack.sh down; exit 1; }
  trap 'deploy/stack.sh down >/dev/null 2>&1' EXIT
  local admin; admin=$(cat "$STACK_DIR/admin-token")
  local urls=http://127.0.0.1:8081/api/v1,http://127.0.0.1:8082/api/v1
  # The storage's own ceiling, on the same Cassandra, in the same run.
  VT_CASSANDRA_HOSTS=127.0.0.1:9042 go test -run '^$' -bench Ceiling -benchtime 1x ./shared/storage/cassandrastore/ | tee "$out/ceiling.txt"
  local ceiling; ceiling=$(awk '/BenchmarkCeiling/ { for (i = 1; i < NF; i++) if ($(i+1) == "raw-events/s") print $i }' "$out/ceiling.txt")
  run() { # label, extra drainbench flags...
    local label=$1; shift
    bin/drainbench -label "$label" -urls "$urls" -admin-token "$admin" -nats-url nats://127.0.0.1:4222 \
      -nats-creds "$STACK_DIR/nats/admin.creds" -duration "$dur" -concurrency "$conc" -bulk "$bulk" \
      -ceiling "${ceiling:-0}" -json "$out/$label.json" "$@"
  }
  deploy/stack.sh stop workers2
  run stack-1-worker-process
  run stack-1-worker-process-held -hold
  deploy/stack.sh start workers2
  run stack-2-worker-processes
  run stack-2-worker-processes-held -hold
}

case "${1:-}" in
  allinone)
    allinone allinone-fsync
    allinone allinone-no-fsync -no-fsync ;;
  stack) stack ;;
  *) echo "usage: $0 allinone|stack" >&2; exit 2 ;;
esac
