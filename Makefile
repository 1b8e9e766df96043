# The front door. Configuration comes from the environment (and an optional .env).
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help install run test lint bench bench-e2e bench-crm bench-ai bench-notifier bench-scheduler fmt

help:
	@echo "make run    start the whole system (infrastructure, migrations, first admin, services)"
	@echo "make demo   the whole system against the sandbox fakes with simulated customers (open http://localhost:8000)"
	@echo "make test   run the test suite against real PostgreSQL, Redis and NATS (with the web app's unit tests and browser tests)"
	@echo "make lint   ruff, mypy --strict, import-linter; the web app: eslint and tsc"
	@echo "make bench  ingest against a bare FastAPI endpoint, 64 connections sustained 40 s: ratio, p50/p99 (BENCH_ARGS=--old: items hours old, Redis consulted)"
	@echo "make bench-e2e  webhooks through ingest and crm at fixed rates, a realistic mix (returning customers, bursts, echoes, reads, reactions): p50/p99, per tenth, lost, CPU per process (E2E_MIX=new: new customers only; E2E_CRM_REPLICAS=2; see docs/benchmarks.md)"
	@echo "make bench-crm  search and deal lists at a million deals (builds the database once)"
	@echo "make bench-web  the web app in headless Chromium at a million deals: time to a usable inbox and pipeline, gzip JS, webhook -> browser p50/p99"
	@echo "make bench-ai   AI analyses: Gemini calls per 100 messages, analyses/min, time to the deal's summary (BENCH_ARGS=--quick)"
	@echo "make bench-notifier  Telegram notifications: webhook -> chat latency at 50/s, notifications/s to 1,000 chats (BENCH_ARGS=--help)"
	@echo "make bench-scheduler  SLA check at a million deals (p50/p95, EXPLAIN), Meta backfill messages/s at 2 and 50 Graph calls/s (BENCH_ARGS=--quick)"

install:
	@bash scripts/bootstrap.sh

run: install
	@$(UV) run --frozen python scripts/run.py

test: install
	@bash scripts/infra.sh ensure
	@cd web && npm test --silent
	@$(UV) run --frozen pytest -n 2 --dist loadgroup -q $(PYTEST_ARGS)

lint: install
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen mypy libs/common/src services/ingest/src services/crm/src services/ai/src services/notifier/src services/scheduler/src sandbox/src
	@$(UV) run --frozen mypy tests services/ingest/tests services/crm/tests services/ai/tests services/notifier/tests services/scheduler/tests libs/common/tests sandbox/tests
	@$(UV) run --frozen lint-imports
	@cd web && npm run --silent lint

fmt: install
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

bench: install
	@bash scripts/infra.sh ensure
	@$(UV) run --frozen python bench/ingest_bench.py $(BENCH_ARGS)

bench-e2e: install
	@bash scripts/infra.sh ensure
	@$(UV) run --frozen python bench/e2e_bench.py

bench-crm: install
	@bash scripts/infra.sh ensure
	@$(UV) run --frozen python bench/crm_bench.py

bench-ai: install
	@bash scripts/infra.sh ensure
	@$(UV) run --frozen python bench/ai_bench.py $(BENCH_ARGS)

bench-notifier: install
	@bash scripts/infra.sh ensure
	@$(UV) run --frozen python bench/notifier_bench.py $(BENCH_ARGS)

bench-scheduler: install
	@bash scripts/infra.sh ensure
	@$(UV) run --frozen python bench/scheduler_bench.py $(BENCH_ARGS)

.PHONY: demo
demo: install
	@$(UV) run --frozen python scripts/run.py --demo

.PHONY: bench-web
bench-web: install
	@bash scripts/infra.sh ensure
	@$(UV) run --frozen python bench/web_bench.py $(BENCH_ARGS)
