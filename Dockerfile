# The trainyard image: two static binaries. /trainyard is the manager and
# (with `agent`) the in-cluster agent; /trainyard-agent is the agent alone
# (cmd/trainyard-agent), which the chart's agent runs: it links none of the
# manager and maps less than half as much. Distroless and non-root, as the
# chart's security context expects (runAsNonRoot, read-only root filesystem).
#
# The build stage runs on the builder's own platform and cross-compiles for
# the target (Go needs no emulation for that): `docker buildx build
# --platform linux/amd64,linux/arm64` builds both images at native speed.
# VERSION and COMMIT stamp `trainyard version` and trainyard_build_info; the
# Makefile's values are `--build-arg VERSION=$(git describe --tags --always)
# --build-arg COMMIT=$(git rev-parse HEAD)`.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux TARGETARCH=amd64 VERSION="(devel)" COMMIT=unknown
RUN LDFLAGS="-s -w -X github.com/trainyard-dev/trainyard/internal/version.version=$VERSION -X github.com/trainyard-dev/trainyard/internal/version.commit=$COMMIT" && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="$LDFLAGS" -o /out/trainyard . && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="$LDFLAGS" -o /out/trainyard-agent ./cmd/trainyard-agent

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/trainyard /trainyard
COPY --from=build /out/trainyard-agent /trainyard-agent
USER 65532:65532
ENTRYPOINT ["/trainyard"]
