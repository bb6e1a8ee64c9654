# The trainyard image: one static binary, the manager and (with `agent`) the
# in-cluster agent. Distroless and non-root, as the chart's security context
# expects (runAsNonRoot, read-only root filesystem).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/trainyard .

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/trainyard /trainyard
USER 65532:65532
ENTRYPOINT ["/trainyard"]
