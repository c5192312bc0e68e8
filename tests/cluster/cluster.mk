# The e2e cluster (tests/cluster/README.md). Included by the top-level Makefile; also
# usable alone: make -f tests/cluster/cluster.mk e2e
#
#   make cluster-build build (or find in the cache) every binary and image; no cluster
#   make images        build the runner image (and base, pause); load it if the cluster runs
#   make cluster-up    build or take from cache, start the cluster; prints KUBECONFIG
#   make cluster-down  stop everything it started and delete its state directory
#   make e2e           run the e2e tier; starts (and then stops) a cluster unless
#                      KUBECONFIG already points at a running one

VENV ?= .venv
CLUSTER_SCRIPTS := tests/cluster

.PHONY: cluster-build cluster-up cluster-down images e2e

cluster-build:
	$(CLUSTER_SCRIPTS)/deps.sh
	$(CLUSTER_SCRIPTS)/build.sh
	$(CLUSTER_SCRIPTS)/images.sh all

cluster-up:
	$(CLUSTER_SCRIPTS)/up.sh

cluster-down:
	$(CLUSTER_SCRIPTS)/down.sh

images:
	$(CLUSTER_SCRIPTS)/deps.sh
	$(CLUSTER_SCRIPTS)/images.sh all

# The e2e fixture itself starts the cluster when KUBECONFIG reaches none, and stops
# only a cluster it started (tests/e2e/conftest.py); this target adds nothing to that
# but the marker selection, so `pytest -m e2e tests/e2e` behaves the same.
e2e:
	$(VENV)/bin/pytest -m e2e tests/e2e
