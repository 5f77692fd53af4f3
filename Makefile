# Volcanion Tracking. `make run` starts the whole system on the embedded
# default; `make test` runs every test. Both need only Go.
GO        ?= go
BIN       := bin
DATA_DIR  ?= ./data
HTTP      ?= 127.0.0.1:8080
MODULES   := shared edge workers registry reporter deploy/allinone
FUZZTIME  ?= 60000x
# package:FuzzTarget pairs run briefly by `make test`: a count of inputs, not
# a duration (a time budget sometimes ends a clean run with "context
# deadline exceeded" from the fuzzing engine itself); 60,000 each keeps
# `make test` under 25 minutes on two cores (FUZZTIME=1000000x for more)
FUZZ      := ./shared/hll:FuzzMergeBinary ./shared/storage/cassandrastore:FuzzCountsCodec ./shared/storage/cassandrastore:FuzzReviewDecodeSealed ./shared/event:FuzzDecode ./shared/event:FuzzDecodeBatch ./shared/event:FuzzAppendJSON ./shared/event:FuzzDigestStable ./shared/event:FuzzDecodeFast ./shared/event:FuzzSplitBatchFast ./shared/event:FuzzParityDecodeVsOld ./shared/event:FuzzParityDecodeBatchVsOld ./shared/event:FuzzDecodeStored ./shared/tenant:FuzzParseKey ./shared/signing:FuzzValid ./edge:FuzzAnswerEncoding ./edge:FuzzAdminBody ./edge:FuzzReportRange

.PHONY: run build test unit fuzz lint modules bench bench-fast bench-reports clean stack stack-down

run: build
	$(BIN)/volcanion -data-dir $(DATA_DIR) -http-listen $(HTTP)

build:
	$(GO) build -o $(BIN)/volcanion ./deploy/allinone/cmd/volcanion

# Starts Cassandra and Redis when nothing answers on their ports, and stops
# what it started (deploy/with-deps.sh).
test: lint modules
	deploy/with-deps.sh $(MAKE) --no-print-directory unit fuzz

lint:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet work

# Each module must also build on its own (GOWORK=off, through its replace directives).
modules:
	@for m in $(MODULES); do echo "GOWORK=off build $$m"; (cd $$m && GOWORK=off $(GO) build ./...) || exit 1; done

# The longest packages first, so none starts last and runs on alone.
LONGEST   := ./shared/storage/cassandrastore ./reporter ./deploy/allinone ./shared/storage/backendtest ./registry

# Tests of scale or of every combination (testenv.Heavy): skipped under the
# race detector, which slows them tenfold on Pebble, and run here without it.
HEAVY      := TestUniqueUsersAtScale|TestReportsInZones|TestOnlySpans|TestUserEstimates|TestEstimatesEveryFigure|TestEstimatesAtTheRetentionHorizon|TestEstimatesWithoutKeptUnions|TestEstimatesTraced|TestEstimatesMixedRetention
HEAVY_PKGS := ./reporter ./shared/storage/backendtest

unit:
	$(GO) test -race -count=1 -timeout 30m $(LONGEST) work
	VT_HEAVY_PASS=1 $(GO) test -count=1 -timeout 20m -run '^($(HEAVY))$$' $(HEAVY_PKGS)

fuzz:
	@for f in $(FUZZ); do pkg=$${f%%:*}; name=$${f##*:}; \
		echo "fuzz $$name ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; done

# Micro benchmarks, the fast path against its ceilings (fastbench), then
# persistence end to end: the all-in-one (fsync on and off) and the
# production topology against the raw Cassandra ceiling measured in the same
# run (deploy/bench.sh; results in data/bench).
bench: build
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=2s ./deploy/allinone/ ./shared/storage/pebblestore/ ./shared/event/ ./edge/internal/...
	@mkdir -p data/bench
	$(GO) run ./deploy/allinone/cmd/fastbench -bin $(BIN)/volcanion -out data/bench/fastbench.json -profile data/bench/profiles -sweep all
	deploy/bench.sh allinone
	deploy/bench.sh stack

# The fast path alone: edge single and bulk against a trivial handler and
# raw JetStream publishing, in one run (FAST_ARGS: e.g. -rounds 1 -duration 5s).
bench-fast: build
	@mkdir -p data/bench
	$(GO) run ./deploy/allinone/cmd/fastbench -bin $(BIN)/volcanion -out data/bench/fastbench.json $(FAST_ARGS)

# Reports at scale: 10 M events over 30 days in Pebble and in Cassandra
# (loaded once, settled once on Cassandra, then reused), p50/p99 of the
# reports uncached and cached, 1 and 8 clients (deploy/bench-reports.sh;
# results in data/bench/reports.json; REPORT_ARGS, e.g. -events 1000000,
# for a smaller set).
bench-reports:
	deploy/bench-reports.sh $(REPORT_ARGS)

# The production topology as local processes (3 NATS nodes, Cassandra, Redis,
# 2 edges, 2 workers, registry, 2 reporters).
stack:
	deploy/stack.sh up

stack-down:
	deploy/stack.sh down

clean:
	rm -rf $(BIN)
