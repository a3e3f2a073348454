# Real-apiserver tests need kube-apiserver and etcd (and Vault for the Vault
# issuer tests). `make assets` builds them once into the per-user cache
# (${XDG_CACHE_HOME:-$HOME/.cache}/fsm-webhooks/assets); later runs reuse them.

GO ?= go

.PHONY: assets test

assets:
	$(GO) run ./test/assets/build --vault

test: assets
	$(GO) vet ./...
	$(GO) test -count=1 -race ./...
