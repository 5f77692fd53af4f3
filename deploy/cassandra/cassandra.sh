#!/usr/bin/env bash
# Runs a real single-node Cassandra without Docker, from Maven Central.
#
#   cassandra.sh fetch            download cassandra-all and its dependencies (cached)
#   cassandra.sh start [DIR]      start on 127.0.0.1:9042 with data under DIR; wait for CQL
#   cassandra.sh stop  [DIR]      stop the node started with DIR, by its PID
#   cassandra.sh status [DIR]
#   cassandra.sh nodetool ARGS... nodetool against the node on this machine
#                                 (JMX on 127.0.0.1:7199), e.g. compact KEYSPACE
#
# Settings: CASSANDRA_VERSION (5.0.6), VT_CACHE_DIR (~/.cache/volcanion),
# CASSANDRA_PORT (9042), CASSANDRA_HEAP (1G), CASSANDRA_WAIT (240 seconds),
# CASSANDRA_NTR_THREADS (native_transport_max_threads, 128: Cassandra's).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
version=${CASSANDRA_VERSION:-5.0.6}
cache=${VT_CACHE_DIR:-$HOME/.cache/volcanion}
lib=$cache/cassandra-$version/lib
port=${CASSANDRA_PORT:-9042}
dir=${2:-${CASSANDRA_DIR:-/tmp/volcanion-cassandra}}
pidfile=$dir/cassandra.pid

log() { echo "cassandra.sh: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

fetch() {
  if [ -f "$lib/.complete" ]; then return; fi
  command -v mvn >/dev/null || { log "mvn is required (apt-get install maven)"; exit 1; }
  log "fetching cassandra-all $version and its dependencies into $lib"
  rm -rf "$lib"
  mvn -q -B -f "$here/pom.xml" -Dcassandra.version="$version" \
    dependency:copy-dependencies -DoutputDirectory="$lib" -DincludeScope=runtime
  touch "$lib/.complete"
}

# The flags Cassandra itself uses on JDK 17 (conf/jvm17-server.options).
jpms=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
)

write_config() {
  mkdir -p "$dir"/{data,commitlog,saved_caches,hints,cdc_raw,logs}
  cat > "$dir/cassandra.yaml" <<YAML
cluster_name: volcanion-test
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:7000"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: 7000
native_transport_port: $port
start_native_transport: true
data_file_directories: [ "$dir/data" ]
commitlog_directory: $dir/commitlog
saved_caches_directory: $dir/saved_caches
hints_directory: $dir/hints
cdc_raw_directory: $dir/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
endpoint_snitch: SimpleSnitch
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
auto_snapshot: false
snapshot_on_duplicate_row_detection: false
disk_failure_policy: stop
commit_failure_policy: stop
concurrent_reads: 8
concurrent_writes: 16
# Threads running client requests. Cassandra's 128 suit a node of many
# cores; on two shared with the reporter, 8 cost the JVM a fifth less CPU
# a report (docs/PERFORMANCE.md, session 30): make bench-reports sets 8.
native_transport_max_threads: ${CASSANDRA_NTR_THREADS:-128}
# Paxos v2: lightweight transactions (event id claims) in fewer round trips.
paxos_variant: v2
# Cassandra 5's own formats (its default keeps 4.x's, for clusters upgraded
# node by node; this node has no older peer). A data directory written in
# them cannot be read in the 4.x mode, and the bench's (data/bench) is
# (docs/PERFORMANCE.md, session 31).
storage_compatibility_mode: NONE
YAML
  cat > "$dir/logback.xml" <<XML
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$dir/logs/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
XML
}

start() {
  if port_open; then log "something already answers on 127.0.0.1:$port"; exit 1; fi
  fetch
  command -v java >/dev/null || { log "java (JDK 17) is required"; exit 1; }
  write_config
  jamm=$(ls "$lib"/jamm-*.jar | head -1)
  local heap=${CASSANDRA_HEAP:-1G}
  log "starting Cassandra $version on 127.0.0.1:$port (data in $dir)"
  # CASSANDRA_JVM_OPTS: extra JVM flags, split on spaces and never globbed
  # (-Xlog:gc*:file=...); one that picks a collector replaces G1.
  local extra=() gc=-XX:+UseG1GC
  read -r -a extra <<< "${CASSANDRA_JVM_OPTS:-}"
  for o in "${extra[@]}"; do
    case "$o" in -XX:+Use*GC) gc= ;; esac
  done
  # Out of heap, the JVM exits (Cassandra warns it may corrupt data if it
  # runs on), so what used it fails at once instead of timing out.
  nohup java -Xms"$heap" -Xmx"$heap" ${gc:+"$gc"} -Xss512k -XX:+ExitOnOutOfMemoryError "${extra[@]}" \
    "${jpms[@]}" -javaagent:"$jamm" \
    -Dcassandra.config="file://$dir/cassandra.yaml" \
    -Dcassandra.storagedir="$dir" -Dcassandra.logdir="$dir/logs" \
    -Dlogback.configurationFile="$dir/logback.xml" \
    -Dcassandra-foreground=yes -Dcassandra.jmx.local.port=7199 \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=100 \
    -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon \
    > "$dir/logs/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  local wait=${CASSANDRA_WAIT:-240} i=0
  until port_open; do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "Cassandra exited during start; last log lines:"; tail -20 "$dir/logs/stdout.log" "$dir/logs/system.log" >&2 || true
      exit 1
    fi
    i=$((i + 1)); if [ "$i" -gt "$wait" ]; then log "CQL did not answer in ${wait}s"; stop; exit 1; fi
    sleep 1
  done
  log "CQL answers on 127.0.0.1:$port after ${i}s (pid $(cat "$pidfile"))"
}

# NodeTool is in cassandra-all: the node's own tool, over JMX.
nodetool() {
  fetch
  java "${jpms[@]}" -Dlogback.configurationFile="$here/logback-tools.xml" -cp "$lib/*" org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p 7199 "$@"
}

stop() {
  [ -f "$pidfile" ] || { log "no pid file in $dir"; return 0; }
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    log "stopped pid $pid"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  nodetool) shift; nodetool "$@" ;;
  status) if port_open; then echo "up on 127.0.0.1:$port"; else echo "down"; exit 1; fi ;;
  *) echo "usage: $0 fetch|start|stop|status [DIR] | nodetool ARGS..." >&2; exit 2 ;;
esac
