#!/usr/bin/env bash
# The report benchmark (make bench-reports): a data set of 10 M events over
# 30 days loaded into Pebble and into Cassandra, once (a later run reuses it,
# or resumes a load that ran out of time), then the reports over it,
# uncached and cached, with 1 and 8 clients. Results: data/bench/reports.json.
#
# On Cassandra a data set just loaded is settled once first (read until no
# pack is left to seal, then nodetool flush and compact; see below).
# Cassandra keeps the data set in data/bench/cassandra: it is started here
# when nothing answers on 127.0.0.1:9042, and stopped after. Cached runs on
# Cassandra use Redis (started here if none answers on 6379), as production
# does. Arguments go to reportbench (e.g. -events 1000000 -runs 10).
set -euo pipefail
cd "$(dirname "$0")/.."
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
mkdir -p data/bench
go run ./reporter/cmd/reportbench -backend pebble "$@"

started_cassandra="" started_redis=""
cleanup() {
  [ -z "$started_redis" ] || kill "$(cat data/bench/redis.pid)" 2>/dev/null || true
  [ -z "$started_cassandra" ] || deploy/cassandra/cassandra.sh stop "$PWD/data/bench/cassandra"
}
trap cleanup EXIT
if ! port_open 9042; then
  # 2 GB: on 1 GB the 10 M-event data set with the users of each type kept
  # the JVM collecting, and doubled its CPU per report (docs/PERFORMANCE.md).
  # 8 request threads, not 128: on these two cores the JVM spent a fifth
  # less CPU a report (docs/PERFORMANCE.md, session 30).
  CASSANDRA_HEAP=${CASSANDRA_HEAP:-2G} CASSANDRA_NTR_THREADS=${CASSANDRA_NTR_THREADS:-8} deploy/cassandra/cassandra.sh start "$PWD/data/bench/cassandra"
  started_cassandra=1
fi
if ! port_open 6379; then
  command -v redis-server >/dev/null || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
  redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes --pidfile "$PWD/data/bench/redis.pid" --logfile /dev/null
  started_redis=1
  for _ in $(seq 1 50); do port_open 6379 && break; sleep 0.1; done
fi
# The JVM's CPU per report is printed beside the reporter's, when its pid is known.
cpu_of=()
[ -f data/bench/cassandra/cassandra.pid ] && kill -0 "$(cat data/bench/cassandra/cassandra.pid)" 2>/dev/null &&
  cpu_of=(-cpu-of "$(cat data/bench/cassandra/cassandra.pid)")
# Once, after the load: the data set as a node holds it after time, its
# ended days' packs sealed and its sstables compacted (the load leaves many,
# and a partition read checks each). A keyspace other than the default
# (-cassandra-keyspace) needs its own -settle-with.
nt=deploy/cassandra/cassandra.sh
settle="$nt nodetool flush vt_bench_reports && $nt nodetool compact vt_bench_reports"
go run ./reporter/cmd/reportbench -backend cassandra -redis-url redis://127.0.0.1:6379/0 "${cpu_of[@]}" -settle-with "$settle" "$@"
