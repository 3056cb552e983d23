# Answerback — the two commands a newcomer runs are `make run` and `make test`.
SHELL := bash
.DEFAULT_GOAL := help

GO        ?= go
CACHE     := $(CURDIR)/.cache
BIN       := $(CACHE)/bin
# Every Go module of the workspace (go.work).
MODULES   := $(shell $(GO) list -m -f '{{.Dir}}' 2>/dev/null)
UNIT_MODULES := $(filter-out $(CURDIR)/integration,$(MODULES))

# Real infrastructure for tests runs on ports of its own, so that it never
# collides with `make run` (9092) or `make infra-up` (9092, 15432).
TEST_INFRA       := $(CACHE)/test-infra
TEST_KAFKA_PORT  ?= 29092
TEST_PG_PORT     ?= 25432
# local: Apache Kafka from Maven Central's jars and a private PostgreSQL (no Docker);
# docker: the same through testcontainers-go; auto: local when java and mvn exist, else docker.
ANSWERBACK_INFRA ?= auto

LOCALINFRA     := $(GO) run ./deploy/local/cmd/localinfra
CONTAINERINFRA := $(GO) run ./deploy/containers/cmd/containerinfra
GOLANGCI_LINT_VERSION := v2.15.0
# Helm renders and lints the Kubernetes chart in deploy/validate's tests,
# built from source at a pinned version (no download from elsewhere).
HELM_VERSION := v4.3.2
HELM         := $(BIN)/helm-$(HELM_VERSION)
# schemathesis (the OpenAPI fuzzer of the integration tests) lives in a
# git-ignored virtualenv under .cache.
SCHEMATHESIS_VERSION := 4.32.5
SCHEMATHESIS         := $(CACHE)/venv/bin/schemathesis
# The web console's browser test (integration/browser_test.go) drives Debian's
# Chromium through playwright-core, pinned in integration/browser/package-lock.json;
# node_modules is git-ignored and installed by `npm ci`.
CHROMIUM        ?= /usr/bin/chromium
BROWSER_DIR     := $(CURDIR)/integration/browser
BROWSER_MODULES := $(BROWSER_DIR)/node_modules

.PHONY: help run test test-unit test-integration fuzz chaos bench bench-stages bench-profile bench-report bench-data bench-roundtrip infra-up infra-down kafka-jars lint fmt tidy clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

run: ## the embedded default: everything on this machine, no Docker (Ctrl-C stops it)
	$(GO) run ./services/devstack

test: ## all tests on real Kafka and PostgreSQL (started here, stopped after), unit tests with -race
	@set -euo pipefail; \
	if [[ -n "$${KAFKA_BROKERS:-}" && -n "$${DATABASE_URL:-}" ]]; then \
	  echo "== using KAFKA_BROKERS=$$KAFKA_BROKERS and DATABASE_URL from the environment"; \
	  $(MAKE) --no-print-directory test-unit test-integration; exit; \
	fi; \
	kind="$(ANSWERBACK_INFRA)"; \
	if [[ $$kind == auto ]]; then \
	  if command -v java >/dev/null && command -v mvn >/dev/null; then kind=local; \
	  elif $(CONTAINERINFRA) available >/dev/null 2>&1; then kind=docker; \
	  else echo "make test: neither java+mvn (for Apache Kafka from Maven Central) nor a Docker engine is available" >&2; exit 1; fi; \
	fi; \
	mkdir -p $(TEST_INFRA); \
	echo "== starting real infrastructure ($$kind)"; \
	if [[ $$kind == docker ]]; then \
	  trap '$(CONTAINERINFRA) down' EXIT; \
	  $(CONTAINERINFRA) up --env-file $(TEST_INFRA)/env; \
	else \
	  trap '$(LOCALINFRA) down --dir $(TEST_INFRA)' EXIT; \
	  $(LOCALINFRA) up --dir $(TEST_INFRA) --cache $(CACHE)/kafka --kafka-port $(TEST_KAFKA_PORT) --pg-port $(TEST_PG_PORT) --env-file $(TEST_INFRA)/env; \
	fi; \
	set -a; . $(TEST_INFRA)/env; set +a; \
	export KAFKA_JARS_CACHE=$(CACHE)/kafka; \
	$(MAKE) --no-print-directory test-unit test-integration

test-unit: $(HELM) ## every module's tests except integration/, with -race
	@set -euo pipefail; export HELM=$(HELM); for m in $(UNIT_MODULES); do \
	  echo "== go test -race $${m#$(CURDIR)/}"; \
	  (cd $$m && $(GO) test -race -count=1 ./...); \
	done

$(HELM):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	@mv $(BIN)/helm $@

test-integration: $(SCHEMATHESIS) $(CHROMIUM) $(BROWSER_MODULES)/.package-lock.json ## the black-box tests in integration/ (real Kafka, kfake, PostgreSQL, schemathesis, the console in Chromium)
	@echo "== go test integration"
	@cd integration && SCHEMATHESIS=$(SCHEMATHESIS) CHROMIUM=$(CHROMIUM) BROWSER_MODULES=$(BROWSER_MODULES) \
	  $(GO) test -count=1 -timeout 20m ./...

# Debian's Chromium, installed once: about 50 packages, 110 MB to download, 15 s here.
$(CHROMIUM):
	@set -euo pipefail; \
	if [[ $$(id -u) == 0 ]] && command -v apt-get >/dev/null; then \
	  echo "== installing chromium with apt-get (once)"; \
	  start=$$SECONDS; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; \
	  echo "== chromium installed in $$((SECONDS - start)) s"; \
	else echo "the console's browser test needs Chromium at $(CHROMIUM): apt-get install chromium (Debian), or CHROMIUM=/path/to/chromium make test" >&2; exit 1; fi; \
	test -x $(CHROMIUM) || { echo "chromium was installed but $(CHROMIUM) is not there: set CHROMIUM" >&2; exit 1; }

# playwright-core as pinned by the lock file; npm ci again when the lock file changes.
$(BROWSER_MODULES)/.package-lock.json: $(BROWSER_DIR)/package-lock.json
	@set -euo pipefail; \
	command -v npm >/dev/null || { echo "the console's browser test needs Node.js 20+ and npm" >&2; exit 1; }; \
	echo "== npm ci in integration/browser"; \
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund --loglevel=error; \
	touch $@

$(SCHEMATHESIS):
	@set -euo pipefail; \
	if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then \
	  if [[ $$(id -u) == 0 ]] && command -v apt-get >/dev/null; then \
	    echo "== installing python3-venv with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	  else echo "schemathesis needs python3 with the venv module (Debian: apt-get install python3-venv)" >&2; exit 1; fi; \
	fi; \
	py=$$(deploy/local/pick-python.sh); \
	echo "== installing schemathesis $(SCHEMATHESIS_VERSION) into $(CACHE)/venv with $$py ($$($$py --version))"; \
	rm -rf $(CACHE)/venv; $$py -m venv $(CACHE)/venv; \
	$(CACHE)/venv/bin/pip install --quiet --disable-pip-version-check schemathesis==$(SCHEMATHESIS_VERSION)

CHAOS_PHASE  ?= 20s
CHAOS_REPORT ?= $(CURDIR)/docs/RELIABILITY.md
chaos: ## the chaos suite: services as processes, faults injected under load, invariants checked; writes CHAOS_REPORT (docs/RELIABILITY.md)
	@cd integration && KAFKA_JARS_CACHE=$(CACHE)/kafka CHAOS_PHASE=$(CHAOS_PHASE) CHAOS_REPORT=$(abspath $(CHAOS_REPORT)) \
	  $(GO) test -tags chaos -count=1 -v -timeout 30m -run TestChaos ./chaos/

FUZZTIME ?= 10s
fuzz: ## run every fuzz target (go test -fuzz) for FUZZTIME each; seeds live in the tests
	@set -euo pipefail; for m in $(UNIT_MODULES); do \
	  cd $$m; \
	  for pkg in $$($(GO) list ./...); do \
	    for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	      echo "== fuzz $$f in $${pkg#github.com/answerback/answerback/} for $(FUZZTIME)"; \
	      $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
	    done; \
	  done; \
	done

BENCH_REPORT  ?= $(CURDIR)/docs/BENCHMARKS.md
BENCH_RESULTS ?= $(CURDIR)/docs/bench/results.json
BENCH_FLAGS   ?=
bench: ## open-loop latency and throughput of Answerback beside the floors and the Watermill peer (BENCH_QUICK=1: a 1-minute smoke; BENCH_FLAGS=-baseline=<commit>: also Answerback built from that commit, compared in the same run); writes BENCH_REPORT
	@cd bench && KAFKA_JARS_CACHE=$(CACHE)/kafka $(GO) run ./cmd/bench -root $(CURDIR) -report $(abspath $(BENCH_REPORT)) -results $(abspath $(BENCH_RESULTS)) $(BENCH_FLAGS)

bench-stages: ## where the round trip spends its time at no load (gateway, aggregator, commit and projection, reply), on Apache Kafka and on the embedded default (BENCH_FLAGS=-systems=embedded: one of them)
	@cd bench && KAFKA_JARS_CACHE=$(CACHE)/kafka $(GO) run ./cmd/bench -root $(CURDIR) -stages-only $(BENCH_FLAGS)

bench-report: ## write docs/BENCHMARKS.md and the plots again from BENCH_RESULTS, measuring nothing (after a change to the report)
	@cd bench && $(GO) run ./cmd/bench -root $(CURDIR) -render -report $(abspath $(BENCH_REPORT)) -results $(abspath $(BENCH_RESULTS))

bench-profile: ## where Answerback's processes and the broker spend their CPU at 200 commands/s (pprof, JFR); raw profiles in docs/bench/profiles
	@cd bench && KAFKA_JARS_CACHE=$(CACHE)/kafka $(GO) run ./cmd/bench -root $(CURDIR) -profile-only -results $(abspath $(BENCH_RESULTS))

bench-data: ## the reply query (order, lines, validItems) against views of 10k and 1M orders and catalogs of 10, 1k and 100k items; writes docs/bench/data-size.md
	@cd bench && KAFKA_JARS_CACHE=$(CACHE)/kafka $(GO) run ./cmd/bench -root $(CURDIR) -data-size-only -results $(abspath $(BENCH_RESULTS))

bench-roundtrip: ## single-client round-trip latency (p50/p90/p99) on real Kafka and PostgreSQL, started like make test
	@set -euo pipefail; \
	mkdir -p $(TEST_INFRA); \
	trap '$(LOCALINFRA) down --dir $(TEST_INFRA)' EXIT; \
	$(LOCALINFRA) up --dir $(TEST_INFRA) --cache $(CACHE)/kafka --kafka-port $(TEST_KAFKA_PORT) --pg-port $(TEST_PG_PORT) --env-file $(TEST_INFRA)/env; \
	set -a; . $(TEST_INFRA)/env; set +a; \
	(cd integration && $(GO) test -run '^$$' -bench BenchmarkRoundTrip -benchtime 2000x -count 1 .)

infra-up: ## start Apache Kafka (9092) and PostgreSQL (15432) in the background; prints the env to use
	@$(LOCALINFRA) up --dir $(CACHE)/infra --cache $(CACHE)/kafka --env-file $(CACHE)/infra/env

infra-down: ## stop what infra-up started (data kept in .cache/infra)
	@$(LOCALINFRA) down --dir $(CACHE)/infra

kafka-jars: ## fetch the Apache Kafka jars from Maven Central into .cache/kafka
	@$(LOCALINFRA) jars --cache $(CACHE)/kafka

$(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	@mv $(BIN)/golangci-lint $@

lint: $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION) ## gofmt, go vet and golangci-lint over every module
	@set -euo pipefail; \
	unformatted=$$(gofmt -l $(MODULES)); \
	if [[ -n $$unformatted ]]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi; \
	for m in $(MODULES); do \
	  echo "== lint $${m#$(CURDIR)/}"; \
	  (cd $$m && $(GO) vet ./... && $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION) run --config $(CURDIR)/.golangci.yml ./...); \
	done

fmt: ## gofmt every module
	gofmt -w $(MODULES)

tidy: ## go mod tidy in every module
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy); done

clean: ## remove caches and data (Kafka jars, test infrastructure, make run's data)
	-$(LOCALINFRA) down --dir $(TEST_INFRA)
	-$(LOCALINFRA) down --dir $(CACHE)/infra
	rm -rf $(CACHE) .data
