# syntax=docker/dockerfile:1
# Build: docker build -t cacheyd .
#        docker buildx build --platform linux/amd64,linux/arm64 -t cacheyd .
# Run:   docker run -p 30123:30123 -v cacheyd:/var/cache/cacheyd cacheyd

# The build stage runs on the builder's own platform and cross-compiles for
# the target's (Go needs no emulation for that), so a multi-platform build
# compiles natively once per target.
FROM --platform=$BUILDPLATFORM golang:1.27-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
ARG TARGETOS
ARG TARGETARCH
# A static binary: no libc in the final image, and no cgo anywhere. The
# image holds cacheyd alone: cacheyd-bench, the benchmark, is run from the
# source tree (go run ./cmd/cacheyd-bench) and is not built here. The
# version is set in cmd/internal/daemon, which both commands share.
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X github.com/cacheyd/cacheyd/cmd/internal/daemon.version=${VERSION}" -o /out/cacheyd ./cmd/cacheyd
# The cache directory, owned by the non-root user so a fresh volume is writable.
RUN mkdir -p /out/cache

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cacheyd /cacheyd
COPY --from=build --chown=65532:65532 /out/cache /var/cache/cacheyd
# The cache is disposable: mount an emptyDir or a volume here.
ENV CACHEYD_CACHE_DIR=/var/cache/cacheyd
VOLUME ["/var/cache/cacheyd"]
USER 65532:65532
EXPOSE 30123
ENTRYPOINT ["/cacheyd"]
