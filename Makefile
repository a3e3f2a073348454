# fsm-webhooks. `make test` is what CI runs (.ci/run).
#
# Real-apiserver tests need kube-apiserver and etcd (and Vault for the Vault
# issuer tests). `make assets` builds them once from the Go module proxy into
# the per-user cache (${XDG_CACHE_HOME:-$HOME/.cache}/fsm-webhooks/assets),
# printing progress; later runs reuse them. KUBEBUILDER_ASSETS / VAULT_BINARY
# override.

GO ?= go
# Bounded fuzzing in CI: each target runs this long after its seed corpus.
FUZZTIME ?= 20s
TEST_TIMEOUT ?= 40m
GOLANGCI_LINT_VERSION ?= v2.15.0
IMAGE ?= flomesh/fsm-webhooks:dev

.PHONY: all build assets test vet verify-generated unit fuzz generate lint image e2e-node

all: build

# Build identity for `fsm-webhooks version` and fsm_webhooks_build_info.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
VERSION_PKG := github.com/flomesh-io/fsm-webhooks/internal/version
LDFLAGS := -X $(VERSION_PKG).version=$(VERSION) -X $(VERSION_PKG).commit=$(COMMIT) -X $(VERSION_PKG).date=$(DATE)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/fsm-webhooks ./cmd/fsm-webhooks

assets:
	$(GO) run ./internal/kubeassets/build --vault

generate:
	hack/generate.sh

verify-generated:
	hack/verify-generated.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# Every package: unit tests and the envtest suites (a real kube-apiserver and
# etcd), all under the race detector.
unit:
	$(GO) tool gotestsum --format testname -- -count=1 -race -timeout $(TEST_TIMEOUT) ./...

fuzz:
	GO=$(GO) hack/fuzz.sh FuzzValidateAdmissionReview ./validator $(FUZZTIME)
	GO=$(GO) hack/fuzz.sh FuzzValidateMeshConfigSpec ./validator/meshconfig $(FUZZTIME)
	GO=$(GO) hack/fuzz.sh FuzzDecodeViewParity ./validator/meshconfig $(FUZZTIME)
	GO=$(GO) hack/fuzz.sh FuzzUnmarshal ./webhooks/reviewhttp $(FUZZTIME)
	GO=$(GO) hack/fuzz.sh FuzzConvertReview ./converter $(FUZZTIME)
	GO=$(GO) hack/fuzz.sh FuzzInjectPod ./injector $(FUZZTIME)
	GO=$(GO) hack/fuzz.sh FuzzMeshConfigAcceptedInjects ./injector $(FUZZTIME)
	GO=$(GO) hack/fuzz.sh FuzzCheck ./certs/servingcert $(FUZZTIME)

test: assets vet verify-generated unit fuzz e2e-node

lint:
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) run ./...

# The single-node cluster suite (test/node): kubelet, containerd, kube-proxy,
# kube-controller-manager and kube-scheduler on this machine. Needs root; it
# installs Debian's containerd, CNI plugins and iptables if missing, builds
# the node binaries into the asset cache (FSM_NODE_ASSETS overrides) and
# undoes every host change when it ends. Its tests carry the e2enode build
# tag so that `unit` (go test ./...) leaves them to this step, the last of
# `make test`.
E2E_NODE_TIMEOUT ?= 60m
e2e-node:
	$(GO) vet -tags e2enode ./test/node/
	$(GO) run ./internal/kubeassets/build --node
	$(GO) run ./test/meshassets/build
	# One package per verbose `go test`: given several, go test holds each
	# package's output until that package ends (unless -p 1), so the node
	# suite's progress would appear only after its tens of minutes.
	$(GO) test -tags e2enode -count=1 -v -timeout $(E2E_NODE_TIMEOUT) ./test/images/
	$(GO) test -tags e2enode -count=1 -v -timeout $(E2E_NODE_TIMEOUT) ./test/node/
	# The init image applying its rules: `unit` skips it on a host without
	# iptables, which the node suite has installed by now.
	FSM_REQUIRE_HOST_IPTABLES=1 $(GO) test -count=1 -v -run '^(TestInitImageAppliesRules|TestIPTablesReadsRanges)$$' ./test/meshimages/

# Needs a container engine (none on the development machines): see Dockerfile.
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) -t $(IMAGE) .
