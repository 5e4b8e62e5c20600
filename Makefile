# runbook-operator — developer entry points. `make help` lists them.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= _out

.DEFAULT_GOAL := help

help: ## this list
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# A new package (folder) also needs a re-install: editable installs map packages when made.
$(STAMP): pyproject.toml $(wildcard operator/*/__init__.py executors/*/__init__.py)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

setup: $(STAMP) ## create .venv and install the project with dev tools

demo: setup ## run the Rapid Attribution runbook locally and show its report
	@mkdir -p $(OUT)
	@rm -f $(OUT)/demo-ledger.jsonl
	$(BIN)/runbookctl run examples/rapid-attribution/runbook.yaml \
	  --input-file examples/rapid-attribution/input.json \
	  --legal-basis legitimate_interests --data-license internal_use_only \
	  --started-by demo@example.org --ledger $(OUT)/demo-ledger.jsonl -o json > $(OUT)/demo-result.json
	$(BIN)/python -c "import json,sys; r=json.load(open('$(OUT)/demo-result.json')); print(r['outputs']['generate_report'].get('markdown','(no markdown)')); print('phase:', r['phase'], '| kpis:', json.dumps(r['kpis']))"
	$(BIN)/runbookctl verify --ledger $(OUT)/demo-ledger.jsonl
	@echo "--- the same runbook with an APPROVAL before acting on the block (approved by flag) ---"
	$(BIN)/runbookctl run examples/rapid-attribution/runbook-with-approval.yaml \
	  --input-file examples/rapid-attribution/input.json \
	  --legal-basis legitimate_interests --data-license internal_use_only \
	  --started-by demo@example.org --approve approve_block \
	  --ledger $(OUT)/demo-ledger.jsonl -o json < /dev/null > $(OUT)/demo-approval-result.json
	$(BIN)/python -c "import json; r=json.load(open('$(OUT)/demo-approval-result.json')); print('phase:', r['phase'], '| approved by:', r['outputs']['act_on_recommendation']['approvedBy'])"
	$(BIN)/runbookctl verify --ledger $(OUT)/demo-ledger.jsonl

demo-cluster: setup ## one command from a fresh machine: cluster, operator (Helm), the Rapid Attribution run on it, its report and verified ledger
	bash hack/demo-cluster.sh

demo-generic: setup ## run the generic-executor demo runbook (no CTI data needed)
	$(BIN)/runbookctl run examples/generic/runbook.yaml --input-file examples/generic/input.json

lint: setup ## ruff (lint + format check), mypy (strict) and the import contracts (.importlinter)
	$(BIN)/ruff check operator executors tests hack benchmarks
	$(BIN)/ruff format --check operator executors tests hack benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

unit: setup ## unit, property and local-runner tests (no cluster)
	$(BIN)/pytest -m "not e2e and not kwok" tests

crds: setup ## regenerate crds/ and the chart's crds/ from the pydantic models
	$(BIN)/python hack/gen_crds.py

bench: setup ## benchmarks: engine, operator vs Argo Workflows on kwok, and the console in Chromium (docs/benchmarks.md; not a test)
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)
	bash hack/browser/install.sh
	$(BIN)/python -m benchmarks.console

bench-console: setup ## the web console's two figures (1,000-step page, 100 of 10,000 executions) in headless Chromium (docs/ui.md)
	bash hack/browser/install.sh
	$(BIN)/python -m benchmarks.console $(BENCH_ARGS)

# Deploying the operator with the Helm chart (docs/operator.md, "Installing").
RUNBOOK_CACHE ?= /var/cache/runbook-operator
LOCAL_KUBECONFIG := $(RUNBOOK_CACHE)/cluster/admin.kubeconfig
IMAGE ?= runbook-operator:dev
RELEASE ?= runbook-operator
DEPLOY_NAMESPACE ?= runbook-system
WATCH_NAMESPACES ?=
HELM_ARGS ?=
KUBE_ENV = export KUBECONFIG="$${KUBECONFIG:-$(LOCAL_KUBECONFIG)}"; \
	helm="$$(hack/cluster/bin-path.sh helm)" && kubectl="$$(hack/cluster/bin-path.sh kubectl)" || exit 1

deploy: ## helm upgrade --install the chart with the local image into the current cluster (WATCH_NAMESPACES=a,b: namespaced)
	@$(KUBE_ENV); set -e; echo "deploy: $(RELEASE) in namespace $(DEPLOY_NAMESPACE), image $(IMAGE), KUBECONFIG=$$KUBECONFIG"; \
	"$$kubectl" apply --server-side --force-conflicts -f charts/runbook-operator/crds/; \
	"$$helm" upgrade --install $(RELEASE) charts/runbook-operator \
	  --namespace $(DEPLOY_NAMESPACE) --create-namespace \
	  --set image.repository=$(firstword $(subst :, ,$(IMAGE))) --set image.tag=$(lastword $(subst :, ,$(IMAGE))) \
	  --set image.pullPolicy=IfNotPresent $(if $(WATCH_NAMESPACES),--set 'watchNamespaces={$(WATCH_NAMESPACES)}') \
	  --wait --timeout 5m $(HELM_ARGS); \
	"$$kubectl" -n $(DEPLOY_NAMESPACE) get deploy,pods -l app.kubernetes.io/instance=$(RELEASE)

undeploy: ## helm uninstall the operator (CRDs, Runbooks, ledgers and the signing key stay)
	@$(KUBE_ENV); set -e; \
	"$$helm" uninstall $(RELEASE) --namespace $(DEPLOY_NAMESPACE) --wait --ignore-not-found

test: lint unit ## set up everything and run all tests (unit + e2e on a real local cluster)
	bash hack/ci-e2e.sh

clean: ## remove the venv and outputs
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache

.PHONY: help setup demo demo-cluster demo-generic lint unit crds bench deploy undeploy test clean

-include cluster.mk
