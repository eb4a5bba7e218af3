# regwire — see README.md. Every tool is built from the Go module proxy into bin/.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

VERSION        ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# RELEASE is the version dist/install.yaml installs (the image tag it names).
RELEASE        ?= v0.1.0
IMAGE_REPO     ?= ghcr.io/regwire/regwire
IMAGE          ?=
COMMIT         ?= $(shell git rev-parse HEAD 2>/dev/null)
GOOS           := $(shell go env GOOS)
GOARCH         := $(shell go env GOARCH)
BIN            := $(CURDIR)/bin
# hack/envtest.sh builds the versions hack/tools/k8s and hack/tools/etcd pin.
ENVTEST_ASSETS := $(BIN)/k8s/$(GOOS)-$(GOARCH)
CONTROLLER_GEN := $(BIN)/controller-gen
GOLANGCI_LINT  := $(BIN)/golangci-lint
REGISTRY       := $(BIN)/registry
REGISTRY_VERSION := v3.1.2
RUNC_HOSTCAPS  := $(BIN)/runc-hostcaps
COMPOSE_PLUGIN := $(BIN)/docker-compose
KIND_NODE      := $(BIN)/kind-node/.built
NEXUS_EMULATOR := $(BIN)/nexus-emulator
KIND_NODE_TAGS := no_aufs no_zfs no_btrfs no_devmapper
# The Compose version hack/tools/compose/go.mod pins, stamped into the plugin.
COMPOSE_VERSION = $(shell awk '$$1 == "require" && $$2 == "github.com/docker/compose/v2" {print $$3}' hack/tools/compose/go.mod)
LDFLAGS        := -s -w -X github.com/regwire/regwire/internal/version.Version=$(VERSION) \
                  -X github.com/regwire/regwire/internal/version.Commit=$(COMMIT)
GO_TEST_FLAGS  ?= -race -count=1
FUZZTIME       ?= 60s

export KUBEBUILDER_ASSETS := $(ENVTEST_ASSETS)

.PHONY: help
help: ## Show this help: every target by section, with the variables' current values.
	@IMAGE_REPO='$(IMAGE_REPO)' RELEASE='$(RELEASE)' FUZZTIME='$(FUZZTIME)' BENCH_RUNS='$(BENCH_RUNS)' \
	awk 'BEGIN {FS = ":.*##"} \
		/^##@/ {printf "\n%s\n", substr($$0, 5); next} \
		/^[a-zA-Z0-9_.-]+:.*##/ { \
			text = $$2; \
			while (match(text, /\$$\([A-Z_]+\)/)) { \
				name = substr(text, RSTART + 2, RLENGTH - 3); \
				text = substr(text, 1, RSTART - 1) ENVIRON[name] substr(text, RSTART + RLENGTH); \
			} \
			printf "  %-18s %s\n", $$1, text }' $(MAKEFILE_LIST)

##@ Main

.PHONY: demo
demo: envtest build ## Run the embedded local stack: API server, CRDs, controllers, samples; Ctrl-C stops it.
	$(BIN)/regwire bootstrap local

# The phases of make test, in order; each is timed, and a table of the times ends the run.
# What only the Docker suite needs (Compose, the kind node's binaries, the images) builds in
# the background at the lowest priority from the start (hack/phases.sh): it takes the CPU
# the other suites leave idle while they wait on API servers, kubelet and registries.
TEST_PHASES := verify-generated background:e2e-docker-prereqs vet lint test-unit e2e-local e2e-node wait e2e-docker

.PHONY: test
test: ## Everything CI runs, in timed phases: generated files, vet, lint, unit and envtest suites, end-to-end suites.
	@MAKE="$(MAKE)" hack/phases.sh $(TEST_PHASES)

.PHONY: test-unit
test-unit: envtest $(REGISTRY) ## Unit and envtest suites (go test ./...), and the benchmark harness's own tests.
	go test $(GO_TEST_FLAGS) ./...
	cd bench && go test $(GO_TEST_FLAGS) ./...

.PHONY: e2e-local
e2e-local: envtest $(REGISTRY) ## The README's manual setup on real parts (as root): ImageSync, nginx, agent, containerd CRI pull, runc; the image run by containerd; the manager SIGKILLed during syncs; signed images across the air gap on disk, in a network namespace with only loopback.
	go test -tags e2e -count=1 -v -timeout 15m -run 'TestTheManualSetupOnRealParts|TestTheImageRunsWithContainerd|TestTheManagerKilledDuringSyncsConverges|TestSignedImagesCrossTheAirGapOnDisk' ./test/e2e/

.PHONY: e2e-node
e2e-node: envtest node-binaries $(REGISTRY) ## regwire on a real kubelet node (as root): Deployment, agent DaemonSet pod, a pod pulling from nexus.local.
	go test -tags e2e -count=1 -v -timeout 25m -run TestARealNodePullsFromThePrivateRegistry ./test/e2e/

.PHONY: e2e-images
e2e-images: $(KIND_NODE) $(NEXUS_EMULATOR) node-binaries $(REGISTRY) ## Build the Docker suite's images without a registry (debootstrap + go-containerregistry) into bin/e2e-images; rebuilt only when an input changes.
	go run ./hack/e2e-images --out $(BIN)/e2e-images --nexus-emulator $(BIN)/nexus-emulator --registry $(REGISTRY) \
		--kind-base-files $$(go list -m -f '{{.Dir}}' sigs.k8s.io/kind)/images/base/files --kind-node-bin $(BIN)/kind-node \
		--k8s-bin $(ENVTEST_ASSETS)

# What kind's node image runs besides Debian's packages, at the versions hack/tools/kind-node
# and hack/tools/coredns pin; $(KIND_NODE) marks them built.
.PHONY: kind-node-bin
kind-node-bin: $(KIND_NODE) ## Build containerd 2, ctr, the runc shim, crictl, the CNI plugins, CoreDNS and pause for the kind node image into bin/kind-node.

$(KIND_NODE): hack/tools/kind-node/go.mod hack/tools/kind-node/go.sum hack/tools/coredns/go.mod hack/tools/coredns/go.sum hack/tools/coredns/main.go hack/tools/k8s/go.mod
	@mkdir -p $(BIN)/kind-node/cni
	cd hack/tools/kind-node && \
	  ctrd=$$(go list -m -f '{{.Version}}' github.com/containerd/containerd/v2) && \
	  crictl=$$(go list -m -f '{{.Version}}' sigs.k8s.io/cri-tools) && \
	  CGO_ENABLED=0 go build -trimpath -tags "$(KIND_NODE_TAGS)" -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$$ctrd" \
	    -o $(BIN)/kind-node/ github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/ctr && \
	  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$$crictl" -o $(BIN)/kind-node/ sigs.k8s.io/cri-tools/cmd/crictl && \
	  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(BIN)/kind-node/cni/ \
	    github.com/containernetworking/plugins/plugins/ipam/host-local github.com/containernetworking/plugins/plugins/main/bridge \
	    github.com/containernetworking/plugins/plugins/main/loopback github.com/containernetworking/plugins/plugins/main/ptp \
	    github.com/containernetworking/plugins/plugins/meta/portmap
	cd hack/tools/coredns && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(BIN)/kind-node/coredns .
	# Kubernetes' own pause, at the version kubeadm names (its PauseVersion), built as
	# Kubernetes builds it: static, -DVERSION.
	k8s=$$(go list -m -f '{{.Dir}}' -modfile hack/tools/k8s/go.mod k8s.io/kubernetes) && \
	  version=$$(sed -n 's/^[[:space:]]*PauseVersion = "\(.*\)"/\1/p' $$k8s/cmd/kubeadm/app/constants/constants.go) && \
	  test -n "$$version" && \
	  gcc -Os -Wall -Werror -static -DVERSION=$$version -o $(BIN)/kind-node/pause $$k8s/build/pause/linux/pause.c
	@touch $@

.PHONY: e2e-docker-prereqs
e2e-docker-prereqs: $(RUNC_HOSTCAPS) $(COMPOSE_PLUGIN) e2e-images ## What only the Docker suite needs: the runtime wrapper, Compose, the images (and the kind node's binaries they hold).

.PHONY: e2e-docker
e2e-docker: e2e-docker-prereqs ## The Docker path (as root) on a private Docker engine: privileged containers, the kind node image, bootstrap up --registry-only, then bootstrap up with kind, a pod pulling from nexus.local, down; one mirror pulled through by containerd, podman, skopeo and Docker Engine, skipFallback.
	go test -tags e2e -count=1 -v -timeout 30m -run 'TestAPrivateDockerEngineRunsPrivilegedContainers|TestOneMirrorWiresEveryRuntime|TestTheRegistryHalfOfBootstrapUpOnARealDockerEngine|TestTheKindNodeBaseImageBootsHere|TestBootstrapUpOnARealDockerEngine' ./test/e2e/

$(NEXUS_EMULATOR): $(shell find hack/nexus-emulator internal/test/nexusemulator internal/nexus -name '*.go' ! -name '*_test.go') go.mod go.sum
	CGO_ENABLED=0 go build -trimpath -o $@ ./hack/nexus-emulator

$(RUNC_HOSTCAPS): hack/runc-hostcaps/main.go internal/hostcaps/hostcaps.go go.mod go.sum
	CGO_ENABLED=0 go build -trimpath -o $@ ./hack/runc-hostcaps

$(COMPOSE_PLUGIN): hack/tools/compose/go.mod hack/tools/compose/go.sum
	cd hack/tools/compose && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$(COMPOSE_VERSION)" -o $@ github.com/docker/compose/v2/cmd

.PHONY: node-binaries
node-binaries: ## Build kubelet, kube-controller-manager, kube-scheduler, kube-proxy, kubeadm and kubectl (same version as kube-apiserver) into bin/k8s/.
	hack/envtest.sh kubelet kube-controller-manager kube-scheduler kube-proxy kubeadm kubectl >/dev/null

.PHONY: image
image: ## Build the regwire image without Docker (linux/amd64, linux/arm64) into bin/image (OCI layout); IMAGE=ref also pushes.
	go run ./hack/image --version $(VERSION) --commit $(COMMIT) --out $(BIN)/image $(if $(IMAGE),--push $(IMAGE) $(if $(filter localhost% 127.0.0.1%,$(IMAGE)),--insecure))

.PHONY: docker-image
docker-image: ## Build the regwire image for this machine without Docker and load it into the Docker engine as $(IMAGE_REPO):dev (IMAGE=ref names it otherwise); what regwire bootstrap up --image runs.
	go run ./hack/image --version $(VERSION) --commit $(COMMIT) --platforms linux/$(GOARCH) --out $(BIN)/image \
		--docker-archive $(BIN)/image.tar --tag $(or $(IMAGE),$(IMAGE_REPO):dev)
	docker load -i $(BIN)/image.tar

.PHONY: dist
dist: ## Write dist/install.yaml from config/default with $(IMAGE_REPO):$(RELEASE).
	go run ./hack/dist --image $(IMAGE_REPO):$(RELEASE) --out dist/install.yaml

.PHONY: chart
chart: ## Write the Helm chart charts/regwire from config/ (internal/chartgen) for $(RELEASE).
	go run ./hack/chart --app-version $(RELEASE)

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 60s; not part of make test).
	@set -e; for target in \
		internal/cabundle:FuzzParse internal/tagselect:FuzzNew internal/nodeconfig:FuzzHostDir \
		internal/nodeconfig:FuzzRender internal/hostsfile:FuzzApply internal/pullsecret:FuzzBuild \
		internal/runtimeconfig:FuzzConfigPathProblem internal/manifest:FuzzSplit; do \
		pkg=$${target%%:*}; fn=$${target##*:}; echo "== $$fn ($$pkg, $(FUZZTIME))"; \
		go test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$pkg; \
	done

##@ Benchmarks (not part of make test)

BENCH_RUNS ?= 5
BENCH_SET  ?= full

.PHONY: bench
bench: bench-tools build bench-go ## regwire sync vs crane, skopeo sync and regsync on a generated image set, one process per repository, one for all and one for a whole prefix, and to and from an OCI directory against skopeo; the Go benchmarks; writes docs/benchmarks.md and .png.
	cd bench && go run . -bin $(BIN) -runs $(BENCH_RUNS) -set $(BENCH_SET) -gobench $(BIN)/bench-go.txt -out $(CURDIR)/docs/benchmarks.md -png $(CURDIR)/docs/benchmarks.png

.PHONY: bench-go
bench-go: ## Go benchmarks (rendering, hosts-file editing, reading sync files), 6 counts for benchstat, into bin/bench-go.txt.
	go test -run '^$$' -bench . -benchmem -count 6 ./internal/nodeconfig/ ./internal/hostsfile/ ./cmd/regwire/ | tee $(BIN)/bench-go.txt

.PHONY: bench-scale
bench-scale: envtest $(REGISTRY) ## 5,000 nodes (100 real agents, 4,900 simulated with real-sized Nodes), 10,000 ImageSyncs, 30,000 unrelated Secrets on a real API server: time to Ready, manager RSS, writes and uncached reads in steady state, mirror-change latency; writes docs/scale.md.
	go test -tags scale -count=1 -v -timeout 90m -run TestScale ./test/scale/

.PHONY: bench-tools
bench-tools: $(REGISTRY) $(BIN)/crane $(BIN)/regsync ## Build crane and regsync from the Go module proxy; skopeo comes from Debian (apt-get install skopeo).
	@command -v skopeo >/dev/null || { echo "skopeo is missing: apt-get install -y skopeo"; exit 1; }

$(BIN)/crane: hack/tools/crane/go.mod
	cd hack/tools/crane && CGO_ENABLED=0 go build -trimpath -o $@ github.com/google/go-containerregistry/cmd/crane

$(BIN)/regsync: hack/tools/regsync/go.mod
	cd hack/tools/regsync && CGO_ENABLED=0 go build -trimpath -o $@ github.com/regclient/regclient/cmd/regsync

.PHONY: build
build: ## Build bin/regwire (sync and version in a process that starts in milliseconds) and bin/regwire-full (every command; bin/regwire hands the others to it), versions stamped.
	CGO_ENABLED=0 go build -trimpath -tags lean -ldflags '$(LDFLAGS)' -o $(BIN)/regwire ./cmd/regwire
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/regwire-full ./cmd/regwire

##@ Generated files

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC under config/.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=manager-role paths=./controllers/... output:rbac:artifacts:config=config/rbac

.PHONY: verify-generated
verify-generated: generate manifests dist chart ## Fail if generated files differ from what is committed.
	@if [ -n "$$(git status --porcelain -- api config dist charts)" ]; then \
		echo "Generated files are stale; run 'make generate manifests dist chart' and commit:"; \
		git status --porcelain -- api config dist charts; git --no-pager diff --stat -- api config dist charts; exit 1; fi

##@ Checks

.PHONY: vet
vet: ## go vet ./... (the e2e tag included; cmd/regwire also as the lean build)
	go vet -tags e2e,scale ./...
	go vet -tags lean ./cmd/regwire
	cd bench && go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint (config: .golangci.yml).
	$(GOLANGCI_LINT) run --allow-parallel-runners ./...
	$(GOLANGCI_LINT) run --allow-parallel-runners --build-tags lean ./cmd/regwire
	cd bench && $(GOLANGCI_LINT) run --allow-parallel-runners ./...

.PHONY: fmt
fmt: ## gofmt every Go file.
	gofmt -w $$(git ls-files '*.go')

##@ Tools (built from the Go module proxy, cached in bin/)

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd into bin/k8s/ (skipped when present).
	hack/envtest.sh kube-apiserver etcd >/dev/null

$(CONTROLLER_GEN): hack/tools/controller-gen/go.mod
	cd hack/tools/controller-gen && go build -o $@ sigs.k8s.io/controller-tools/cmd/controller-gen

$(GOLANGCI_LINT): hack/tools/golangci-lint/go.mod
	cd hack/tools/golangci-lint && go build -o $@ github.com/golangci/golangci-lint/v2/cmd/golangci-lint

$(REGISTRY): hack/tools/registry/go.mod
	cd hack/tools/registry && CGO_ENABLED=0 go build -trimpath \
		-ldflags '-X github.com/distribution/distribution/v3/version.version=$(REGISTRY_VERSION)' \
		-o $@ github.com/distribution/distribution/v3/cmd/registry

.PHONY: registry
registry: $(REGISTRY) ## Build the CNCF distribution registry the tests run (bin/registry).

.PHONY: k8s-binaries
k8s-binaries: ## Build every Kubernetes binary the tests run (kube-apiserver, etcd and a node's) in one go build into bin/k8s/.
	hack/envtest.sh kube-apiserver etcd kubelet kube-controller-manager kube-scheduler kube-proxy kubeadm kubectl >/dev/null

.PHONY: test-tools
test-tools: k8s-binaries $(CONTROLLER_GEN) $(GOLANGCI_LINT) $(REGISTRY) ## Build the tools every suite but the Docker one needs (make test builds the Docker suite's itself, in the background).

.PHONY: tools
tools: test-tools $(RUNC_HOSTCAPS) $(COMPOSE_PLUGIN) $(KIND_NODE) $(NEXUS_EMULATOR) ## Build every tool (independent builds run side by side under make -j).

.PHONY: clean
clean: ## Remove what the build made (keeps bin/k8s, which is slow to build).
	rm -rf $(BIN)/regwire $(BIN)/regwire-full $(BIN)/image $(BIN)/crane $(BIN)/regsync $(BIN)/bench-go.txt \
		$(CONTROLLER_GEN) $(GOLANGCI_LINT) $(REGISTRY) $(RUNC_HOSTCAPS) $(COMPOSE_PLUGIN) dist/tmp
