# The one rtm image: every stage, the CDC bridge, the collector, the sinks
# and the tools (topics, rules, probe). Distroless: no shell, so container
# healthchecks run `rtm probe URL`.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/rtm ./cmd/rtm
# The data directory, made here because the final image has no shell: a
# named volume mounted on it starts as a copy of it, owned by the nonroot
# user (65532) the image runs as, so the stages can write their stores.
RUN mkdir -p /out/var/lib/rtm

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rtm /usr/local/bin/rtm
COPY --from=build --chown=65532:65532 /out/var/lib/rtm /var/lib/rtm
USER 65532:65532
ENV RTM_DATA_DIR=/var/lib/rtm
# The ops port (/healthz, /readyz, /metrics) as every service here sets
# http_addr; the collector also listens on 8081.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/rtm"]
