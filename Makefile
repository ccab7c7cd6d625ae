# portfolio-sync: `make demo` runs everything in one process; `make test` runs the whole suite.
# Both install what they need into .venv first. `make help` lists every target.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install install-latest test-deps demo demo-serve test screenshots test-unit chaos lint format schemas release-schemas bench-fetcher bench-ledger bench-history bench-latency bench-scale bench-api kafka-jars kafka-tail up down status clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

install: $(INSTALLED) ## create .venv and install the package with its dev tools (pinned by constraints.txt)

install-latest: ## resolve the newest allowed versions and rewrite constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade -e '.[dev]'
	@head -n 2 constraints.txt > constraints.new
	$(BIN)/python -m pip freeze --exclude-editable >> constraints.new
	@mv constraints.new constraints.txt
	@touch $(INSTALLED)

demo: $(INSTALLED) ## all four services in one process (in-memory bus, SQLite, simulated broker): 3 sync cycles
	$(BIN)/portfolio-sync demo --cycles 3

demo-serve: $(INSTALLED) ## the same, but keep serving the API on 127.0.0.1:8000 until Ctrl-C
	$(BIN)/portfolio-sync demo

test-deps: ## apt-get PostgreSQL, Java 17 and Maven when missing; resolve the Kafka jars (not with Docker)
	infra/install-test-deps

test: lint test-deps ## lint, type-check, then every test: unit, contract, integration (real Kafka + Postgres), e2e
	$(BIN)/python -m pytest $(PYTEST_ARGS)

CHAOS_ROWS := .run/chaos-rows.jsonl
chaos: test-deps ## every fault under steady load (several minutes); writes the table into docs/reliability.md
	@mkdir -p .run && rm -f $(CHAOS_ROWS)
	CHAOS_LEVEL=long CHAOS_REPORT=$(CHAOS_ROWS) $(BIN)/python -m pytest tests/chaos -s $(PYTEST_ARGS); \
	status=$$?; $(BIN)/python -m tests.chaos.table $(CHAOS_ROWS) docs/reliability.md; exit $$status

screenshots: $(INSTALLED) ## run the browser tests and save their screenshots over docs/screenshots (the README's)
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/browser $(PYTEST_ARGS)

test-unit: $(INSTALLED) ## only the fast layer: no Kafka, no Postgres
	$(BIN)/python -m pytest tests/unit -k 'not kafka' $(PYTEST_ARGS)

lint: $(INSTALLED) ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy services shared

format: $(INSTALLED) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

schemas: $(INSTALLED) ## regenerate shared/schemas/*.json (event schemas, AsyncAPI document) from the code
	$(BIN)/python -m shared.schema_files

release-schemas: $(INSTALLED) ## keep today's event schemas as VERSION's (shared/schemas/released/VERSION)
	@test -n "$(VERSION)" || { echo "usage: make release-schemas VERSION=0.2.0"; exit 2; }
	$(BIN)/python -m shared.schema_files --release $(VERSION)

bench-fetcher: $(INSTALLED) ## fetcher throughput over real Kafka vs the seed's sequential loop, and a rate-limit run
	$(BIN)/python bench/fetcher.py

bench-ledger: $(INSTALLED) ## ledger ingest on real Kafka + Postgres vs the raw COPY limit and the seed's way; RSS
	$(BIN)/python bench/ledger.py

bench-history: $(INSTALLED) ## history bytes per account-day, as-of reads, ledger ingest: old layout vs new in one run
	$(BIN)/python bench/history.py

bench-latency: $(INSTALLED) ## SyncRequested -> HoldingsChanged latency at 200 requests/s (p50, p99)
	$(BIN)/python bench/latency.py

bench-api: $(INSTALLED) ## API reads on a 1M-holding Postgres: requests/s, p50/p99 against /healthz, 1 and 2 workers
	$(BIN)/python bench/api.py

bench-scale: $(INSTALLED) ## 1, 2, 3 fetchers of one broker: an app-wide limit kept (0 429s), per-account limits scale
	$(BIN)/python bench/scale.py

kafka-jars: ## resolve the Apache Kafka broker jars from Maven Central
	mvn -q -B -f infra/kafka/pom.xml package

KAFKA ?= 127.0.0.1:9092
kafka-tail: ## print TOPIC (e.g. holdings.changes) from the start with Kafka's own console consumer
	@test -n "$(TOPIC)" || { echo "usage: make kafka-tail TOPIC=holdings.changes [KAFKA=host:port]"; exit 2; }
	@java -cp 'infra/kafka/target/lib/*' -Dlog4j2.configurationFile=infra/kafka/tools-log4j2.properties \
	  org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server $(KAFKA) --topic $(TOPIC) \
	  --from-beginning --formatter-property print.key=true --formatter-property print.timestamp=true

up: $(INSTALLED) ## start Postgres, Kafka and the four services as local processes
	PATH="$(CURDIR)/$(BIN):$$PATH" infra/stack up

down: ## stop what `make up` started
	PATH="$(CURDIR)/$(BIN):$$PATH" infra/stack down

status: ## what `make up` started, and whether it runs
	PATH="$(CURDIR)/$(BIN):$$PATH" infra/stack status

clean: ## remove .venv, caches and local service data
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache infra/kafka/target
