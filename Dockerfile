# syntax=docker/dockerfile:1
# Build: docker build -t relay .
# Run:   docker run -p 8080:8080 -p 127.0.0.1:9090:9090 -v relay-data:/var/lib/relay \
#          -e RECALL_WEBHOOK_SECRET=whsec_... -e RELAY_ADMIN_TOKEN=... relay
#        (or mount your own config over /etc/relay/relay.yaml).
# The image listens on every interface (:8080 ingest, :9090 admin), so relay
# serve refuses to start on the quick-start's public demo secret or with an
# admin listener without a token: it says which to set (README, Docker).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/relay ./cmd/relay \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/relay /usr/local/bin/relay
COPY configs/relay.yaml /etc/relay/relay.yaml
COPY --from=build --chown=nonroot:nonroot /out/data /var/lib/relay
ENV RELAY_STORAGE__DIR=/var/lib/relay \
    RELAY_SERVER__LISTEN=:8080 \
    RELAY_SERVER__ADMIN_LISTEN=:9090
WORKDIR /var/lib/relay
USER nonroot:nonroot
EXPOSE 8080 9090
VOLUME ["/var/lib/relay"]
ENTRYPOINT ["relay"]
CMD ["serve", "-c", "/etc/relay/relay.yaml"]
