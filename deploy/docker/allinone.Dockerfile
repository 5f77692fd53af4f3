# The all-in-one image: embedded NATS, embedded storage, all four services.
FROM golang:1.26 AS build
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/volcanion ./deploy/allinone/cmd/volcanion

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/volcanion /volcanion
VOLUME /data
EXPOSE 8080 4222
ENTRYPOINT ["/volcanion", "-data-dir", "/data", "-http-listen", "0.0.0.0:8080", "-nats-listen", "0.0.0.0:4222"]
