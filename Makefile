# mpha — see README.md. `make test` is what CI runs (after `make deps tools`).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO       ?= go
BIN      := $(CURDIR)/bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X github.com/mpha-dev/mpha/internal/version.version=$(VERSION) \
            -X github.com/mpha-dev/mpha/internal/version.commit=$(COMMIT)
# Integration tests start API servers, Flux and Gitea: give a slow machine room.
TEST_TIMEOUT ?= 20m
TEST_FLAGS   ?=
export MPHA_BIN := $(BIN)

.PHONY: build
build: ## build bin/mpha
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/mpha ./cmd/mpha

IMAGE_ARCH ?= amd64

.PHONY: image
image: ## the container image, docker-loadable, into dist/mpha-image.tar (no Docker daemon; tag = the chart's default image)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o dist/linux-$(IMAGE_ARCH)/mpha ./cmd/mpha
	$(GO) run ./internal/ociimage/mkimage -binary dist/linux-$(IMAGE_ARCH)/mpha -arch $(IMAGE_ARCH) -chart charts/mpha \
		-version $(VERSION) -revision $(COMMIT) -created $$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z) \
		-out dist/mpha-image.tar

.PHONY: generate
generate: ## rewrite the files generated from agent.Config: docs/configuration.md, the chart's schema and defaults
	MPHA_UPDATE_GOLDEN=1 $(GO) test -count=1 -run 'TestGeneratedFilesAreCurrent' ./charts/

.PHONY: test
test: tools deps-check ## unit + integration tests on real components (builds the tools first)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) ./...

.PHONY: test-short
test-short: ## unit tests only: needs no tool binary
	$(GO) test -short -count=1 $(TEST_FLAGS) ./...

.PHONY: lint
lint: ## gofmt check, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags e2e,demo,bench ./...
	@[ -x $(BIN)/staticcheck ] || tools/build.sh lint
	$(BIN)/staticcheck -tags e2e,demo,bench ./...

.PHONY: tools
tools: ## build the real components the tests run into bin/ (cached; a second run is a no-op)
	@tools/build.sh

.PHONY: deps
deps: ## install the Debian packages the tests use, if missing (postgresql, git, unshare, gcc, bind9)
	tools/deps.sh install

.PHONY: deps-check
deps-check:
	@tools/deps.sh check

.PHONY: e2e
e2e: tools deps-check ## the end-to-end drill and its negative controls: two clusters, BIND, Flux, sealed-secrets, Gitea, NATS, both agents, MP stand-ins, clients (test/e2e)
	$(GO) test -tags e2e -count=1 -timeout 60m -run '^(TestDrill|TestNegativeControls)$$' -v ./test/e2e/

# The demo is the e2e package's TestDemo, compiled and run without -test.v: only its narration is
# printed (the components' logs go to a folder it names). MPHA_DEMO_EXIT=1 exits after the failover.
.PHONY: demo
demo: tools deps-check ## the local demo: the drill's rig narrated, a failover, then left running until Ctrl-C (MPHA_DEMO_EXIT=1: exit)
	@$(GO) test -c -tags e2e,demo -o $(BIN)/mpha-demo.test ./test/e2e/
	@cd test/e2e && $(BIN)/mpha-demo.test -test.run '^TestDemo$$' -test.timeout 0

# make bench writes its tables to BENCH_RESULTS too, headed with the machine and the date.
BENCH_RESULTS ?= bench/results/$(shell date -u +%Y-%m-%d)-$(shell hostname -s).md

.PHONY: bench
bench: tools deps-check ## benchmarks: Go benchmarks, then bench/*.sh (dbsync only with MPHA_BENCH_DBSYNC=1); tables also into bench/results/
	@mkdir -p $(dir $(BENCH_RESULTS)); bench/lib/machine.sh > $(BENCH_RESULTS); echo '```' >> $(BENCH_RESULTS)
	@{ $(GO) test -run '^$$' -bench . -benchtime 3x -count=1 ./... 2>&1 | { grep -v -e ' request: ' -e '^PASS$$' -e '^ok ' -e 'no test files' || true; }; \
	  for s in bench/*.sh; do \
	    if [ "$$s" = bench/dbsync.sh ] && [ "$${MPHA_BENCH_DBSYNC:-}" != 1 ]; then echo "== $$s skipped (~10 min): MPHA_BENCH_DBSYNC=1 make bench, or make bench-db"; continue; fi; \
	    bash "$$s"; \
	  done; } | tee -a $(BENCH_RESULTS)
	@echo '```' >> $(BENCH_RESULTS); echo "results: $(BENCH_RESULTS)"

.PHONY: bench-db
bench-db: tools deps-bench ## the slow database benchmarks alone (bench/dbsync.sh: logical replication lag vs a streaming replica, ~2 min; db sync at 200 MiB, 1 GiB and 5 GiB vs pg_dump and pgcopydb, ~30 min, ~25 GiB of disk; MPHA_BENCH_DB=replication or sync for one)
	bash bench/dbsync.sh

.PHONY: deps-bench
deps-bench: ## the Debian packages the tests and the benchmarks' peers use (pgcopydb), if missing
	tools/deps.sh bench

.PHONY: clean
clean: ## remove bin/ (the tools cache in ~/.cache/mpha-tools stays)
	rm -rf $(BIN)

.PHONY: help
help:
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'
