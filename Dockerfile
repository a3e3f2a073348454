# syntax=docker/dockerfile:1.7
#
# fsm-webhooks image: a static binary on distroless, running as nonroot
# (uid 65532, matching the chart's securityContext).
#
#   docker build -t flomesh/fsm-webhooks:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t ... .

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS builder
WORKDIR /src

# Module download is cached by go.mod/go.sum alone, so source edits do not
# refetch dependencies.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .

# BuildKit (required for the cache mounts) sets these for the target platform.
ARG TARGETOS
ARG TARGETARCH
# `fsm-webhooks version` and fsm_webhooks_build_info (internal/version);
# e.g. --build-arg VERSION=v0.2.0 --build-arg COMMIT=$(git rev-parse HEAD).
ARG VERSION="" COMMIT="" DATE=""
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X github.com/flomesh-io/fsm-webhooks/internal/version.version=${VERSION} -X github.com/flomesh-io/fsm-webhooks/internal/version.commit=${COMMIT} -X github.com/flomesh-io/fsm-webhooks/internal/version.date=${DATE}" -o /out/fsm-webhooks ./cmd/fsm-webhooks

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/fsm-webhooks /usr/local/bin/fsm-webhooks
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fsm-webhooks"]
CMD ["serve"]
