# Local Kubernetes for tests, CI and the demo (issue 3). Included by the Makefile;
# standalone: make -f cluster.mk <target>. See docs/cluster.md.
# Binaries and state live outside the repository, under $(RUNBOOK_CACHE)
# (default /var/cache/runbook-operator).

tools: ## build the pinned cluster binaries from Go modules (cached by version)
	@hack/cluster/build-tools.sh

cluster-up: ## start the local single-node cluster (KWOK=1: control plane + kwok nodes only)
	@KWOK="$(KWOK)" hack/cluster/cluster-up.sh

cluster-down: ## stop the local cluster (by PID files) and clean up its state
	@hack/cluster/cluster-down.sh

image: ## build runbook-operator:dev and the pause image without any registry
	@hack/image/build.sh

kind-up: ## alternative with Docker + internet: create a kind cluster from hack/kind.yaml
	@hack/cluster/kind.sh up

kind-load: ## load runbook-operator:dev into the kind cluster
	@hack/cluster/kind.sh load

e2e: ## packages, binaries, image, cluster, `pytest -m "e2e or kwok" tests/e2e`, teardown
	@bash hack/ci-e2e.sh

.PHONY: tools cluster-up cluster-down image kind-up kind-load e2e
