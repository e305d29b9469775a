# slotstream — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SLOT   := $(BIN)/slotstream
PYTEST_ARGS ?=

.PHONY: help
help: ## Show this help
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: venv
venv: $(STAMP) ## Create .venv and install slotstream with its dev tools

.PHONY: system-deps
system-deps: ## Install Java 17 and Maven from apt if missing (needs root)
	@if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then \
	  echo "installing Java 17 and Maven (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven; \
	fi

.PHONY: up
up: venv system-deps ## Start the local stack (Kafka, TimescaleDB) and create the topics
	$(SLOT) stack up
	$(SLOT) topics create

.PHONY: down
down: venv ## Stop the local stack
	$(SLOT) stack down

.PHONY: status
status: venv ## Show the local stack's health
	$(SLOT) stack status

.PHONY: lint
lint: venv ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: test
test: up lint ## Run everything: start the stack, lint, run pytest against the real services
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: demo
demo: up ## Main job: run the pipeline on the real data in ../shared/data
	$(SLOT) demo

.PHONY: bench-sink
bench-sink: up ## Benchmark: the sink's write_batch over the full hotel replay's records (median of 3)
	$(BIN)/python -m bench.sink_write --runs 3

.PHONY: dashboards
dashboards: venv ## Regenerate dashboards/json from dashboards/definitions.py
	$(SLOT) dashboards generate

.PHONY: fmt
fmt: venv ## Format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: bench-replay
bench-replay: up ## Benchmark: full hotel replay end to end (median of 3) beside the raw ceilings
	$(BIN)/python -m bench.replay --runs 3
