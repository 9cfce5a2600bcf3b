# The one rtm image: every stage, the CDC bridge, the collector and the tools.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/rtm ./cmd/rtm

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rtm /usr/local/bin/rtm
ENTRYPOINT ["/usr/local/bin/rtm"]
