# The e2e cluster (tests/cluster/README.md). Included by the top-level Makefile; also
# usable alone: make -f tests/cluster/cluster.mk e2e
#
#   make cluster-build build (or find in the cache) every binary and image; no cluster
#   make cluster-images build the images (and base, pause); load them if the cluster runs
#   make cluster-up    build or take from cache, start the cluster; prints KUBECONFIG
#   make cluster-down  stop everything it started and delete its state directory
#   make e2e           run the e2e tier; starts (and then stops) a cluster unless
#                      KUBECONFIG already points at a running one
#   make k8s-up        the cluster with the chart installed (helm/local-values.yaml),
#                      healthy through the Ingress; prints SANDBOX_URL, SANDBOX_TOKEN_FILE
#   make k8s-down      remove the release and the whole cluster

VENV ?= .venv
CLUSTER_SCRIPTS := tests/cluster

.PHONY: cluster-build cluster-up cluster-down cluster-images e2e k8s-up k8s-down k8s-bench helm-bin

cluster-build:
	$(CLUSTER_SCRIPTS)/deps.sh
	$(CLUSTER_SCRIPTS)/build.sh
	$(CLUSTER_SCRIPTS)/images.sh all

cluster-up:
	$(CLUSTER_SCRIPTS)/up.sh

cluster-down:
	$(CLUSTER_SCRIPTS)/down.sh

cluster-images:
	$(CLUSTER_SCRIPTS)/deps.sh
	$(CLUSTER_SCRIPTS)/images.sh all

# The e2e fixture itself starts the cluster when KUBECONFIG reaches none, and stops
# only a cluster it started (tests/e2e/conftest.py); this target adds nothing to that
# but the marker selection, so `pytest -m e2e tests/e2e` behaves the same.
e2e:
	$(VENV)/bin/pytest -m e2e tests/e2e

k8s-up:
	@$(CLUSTER_SCRIPTS)/k8s-up.sh

k8s-down:
	$(CLUSTER_SCRIPTS)/down.sh

# Kubernetes mode's benchmarks (bench/k8s_bench.py, bench/k8s_browser_bench.py): the
# release of `make k8s-up`, beside local mode on this machine, in the same run.
k8s-bench: venv sandbox-env
	$(VENV)/bin/python bench/k8s_bench.py
	$(VENV)/bin/python bench/k8s_browser_bench.py
