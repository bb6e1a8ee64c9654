# trainyard — see README.md. `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)

HELM_VERSION ?= v3.22.0
# The Kubernetes minor of the client-go that HELM_VERSION is built with (its
# go.mod): released helm binaries stamp it, and `helm template` and `helm lint`
# assume it without a cluster. go install alone would leave 1.20, which the
# chart's kubeVersion refuses.
HELM_K8S_MINOR ?= 37
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)-k8s1.$(HELM_K8S_MINOR)
# promtool (Prometheus 3.16) runs the chart's alerting rules against test series.
PROMTOOL_VERSION ?= v0.316.0
PROMTOOL ?= $(LOCALBIN)/promtool-$(PROMTOOL_VERSION)

# Test control plane (kube-apiserver, etcd, kubectl) built from source into
# setup-envtest's store by hack/controlplane/build.sh; printed path reused.
CONTROLPLANE_BUILD := hack/controlplane/build.sh

# Arguments for `go test` (for example GOTEST_ARGS="-run Foo -v").
GOTEST_ARGS ?=

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
# The manager's packages; the agent (./agent) gets a role of its own.
MANAGER_PATHS := ./;./api/...;./controllers/...;./webhook/...;./bridge/...;./internal/...

manifests: $(CONTROLLER_GEN) ## Generate CRDs, RBAC and webhook manifests into config/ and the Helm chart.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="$(MANAGER_PATHS)" \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac \
		output:webhook:artifacts:config=config/webhook
	$(CONTROLLER_GEN) rbac:roleName=agent-role paths="./agent" output:rbac:artifacts:config=config/agent
	$(CONTROLLER_GEN) rbac:roleName=agent-helm-role paths="./agent/helmrelease" output:rbac:artifacts:config=config/agent/helm
	go run ./hack/chartgen -config config -out charts/trainyard/templates/generated -chart charts/trainyard

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./..."

.PHONY: fmt
fmt: ## Run gofmt on the module.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: verify
verify: manifests generate vet ## Fail when generated files are stale, code is unformatted or go vet complains.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	@# Regeneration must not change a tracked file or add an untracked one.
	@if ! git diff --quiet -- api config charts || [ -n "$$(git ls-files --others --exclude-standard -- api config charts)" ]; then \
		echo "Generated files are stale; run 'make manifests generate' and commit:"; \
		git --no-pager diff --stat -- api config charts; git ls-files --others --exclude-standard -- api config charts; exit 1; fi
	@echo "verify: generated files are up to date"

.PHONY: controlplane
controlplane: ## Provide kube-apiserver, etcd and kubectl: the release binaries (setup-envtest), else a source build (once; ~12 min on 2 cores).
	@$(CONTROLPLANE_BUILD) >/dev/null

# Each fuzz target of the bridge's request decoders runs this many inputs in `make test`
# (a count, not a duration: a wall-clock -fuzztime can end the run with
# "context deadline exceeded" while the fuzzer is still minimising an input).
FUZZTIME ?= 10000x
FUZZ_TARGETS := FuzzDecodeCheckIn FuzzDecodeRelease FuzzDecodeMultiGet FuzzDecodeDoctor

.PHONY: test
test: manifests generate $(HELM) $(PROMTOOL) ## Run every test (unit and envtest suites against a real apiserver, the chart, the quickstart), then the fuzzers briefly.
	KUBEBUILDER_ASSETS="$$($(CONTROLPLANE_BUILD))" HELM="$(HELM)" PROMTOOL="$(PROMTOOL)" go test -count=1 ./... $(GOTEST_ARGS)
	@for t in $(FUZZ_TARGETS); do \
		echo "go test -run='^$$' -fuzz='^$$t\$$' -fuzztime=$(FUZZTIME) ./bridge"; \
		go test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) ./bridge || exit 1; done

# Manager flags for `make dev`: everything on loopback, plain-HTTP metrics.
DEV_MANAGER_ARGS ?= --metrics-bind-address=127.0.0.1:8082 --metrics-secure=false \
	--health-probe-bind-address=127.0.0.1:8081

# Manager processes of `make dev` (2 or more: leader election, and the webhook
# and bridge ports reach whichever replica is up). More flags of hack/dev.
DEV_REPLICAS ?= 1
DEV_FLAGS ?=

.PHONY: dev
dev: manifests generate build kubectl ## Run the whole system locally: etcd, kube-apiserver, CRDs, webhook, the manager (DEV_REPLICAS=2: two) and an agent.
	go build -o $(LOCALBIN)/dev ./hack/dev
	KUBEBUILDER_ASSETS="$$($(CONTROLPLANE_BUILD))" $(LOCALBIN)/dev -manager $(LOCALBIN)/trainyard -replicas $(DEV_REPLICAS) $(DEV_FLAGS) -- $(DEV_MANAGER_ARGS)

.PHONY: dev-clean
dev-clean: ## Delete the local control plane's state (.dev/).
	rm -rf .dev

.PHONY: kubectl
kubectl: ## Link bin/kubectl to the kubectl built from source.
	@mkdir -p $(LOCALBIN) && ln -sf "$$($(CONTROLPLANE_BUILD))/kubectl" $(LOCALBIN)/kubectl

##@ Benchmarks (figures in docs/performance.md)

BENCH_ARGS ?=

.PHONY: bench-fleet
bench-fleet: build ## Controllers: 10,000 reports, a new latest for half of them, vs raw status patches.
	KUBEBUILDER_ASSETS="$$($(CONTROLPLANE_BUILD))" go run ./hack/bench/fleet -manager $(LOCALBIN)/trainyard $(BENCH_ARGS)

.PHONY: bench-bridge
bench-bridge: build ## Bridge: check-ins from 10,000 clusters and the multi-get, vs a trivial handler.
	KUBEBUILDER_ASSETS="$$($(CONTROLPLANE_BUILD))" go run ./hack/bench/bridge -manager $(LOCALBIN)/trainyard $(BENCH_ARGS)

.PHONY: bench-agent
bench-agent: build ## Agent: peak RSS with 2,000 labelled (and 2,000 other) Deployments.
	KUBEBUILDER_ASSETS="$$($(CONTROLPLANE_BUILD))" go run ./hack/bench/agent -manager $(LOCALBIN)/trainyard $(BENCH_ARGS)

##@ Build

.PHONY: build
build: ## Build the manager binary into bin/trainyard (static, as in the image).
	CGO_ENABLED=0 go build -o $(LOCALBIN)/trainyard .

.PHONY: helm
helm: $(HELM) ## Install helm into bin/ (from source, through the Go module proxy).

$(HELM):
	GOBIN=$(LOCALBIN) go install -ldflags "$(foreach p,chartutil lint/rules,-X helm.sh/helm/v3/pkg/$(p).k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$(p).k8sVersionMinor=$(HELM_K8S_MINOR))" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/helm $(HELM)
	ln -sf $(notdir $(HELM)) $(LOCALBIN)/helm

.PHONY: promtool
promtool: $(PROMTOOL) ## Install Prometheus' promtool into bin/ (from source, through the Go module proxy).

$(PROMTOOL):
	GOBIN=$(LOCALBIN) go install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)
	mv $(LOCALBIN)/promtool $(PROMTOOL)

$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $(CONTROLLER_GEN)
