# The trainyard image: two static binaries. /trainyard is the manager and
# (with `agent`) the in-cluster agent; /trainyard-agent is the agent alone
# (cmd/trainyard-agent), which the chart's agent runs: it links none of the
# manager and maps less than half as much. Distroless and non-root, as the
# chart's security context expects (runAsNonRoot, read-only root filesystem).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/trainyard . && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/trainyard-agent ./cmd/trainyard-agent

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/trainyard /trainyard
COPY --from=build /out/trainyard-agent /trainyard-agent
USER 65532:65532
ENTRYPOINT ["/trainyard"]
