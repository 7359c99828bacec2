# The production image: `callbridge` built without the `sandboxes` feature, so the amoCRM and
# Mango stand-ins and the demo and bench commands are not in it (`serve`, `simulate` and
# `generate` are). Build: docker build -t callbridge .
# Run:   docker run -v /path/to/callbridge.toml:/etc/callbridge/callbridge.toml:ro \
#            -v callbridge-data:/var/lib/callbridge -p 8080:8080 callbridge

FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features -p callbridge

FROM debian:bookworm-slim
# CA roots for the CRM's and Mango's https endpoints; a user of its own for the service.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/callbridge callbridge \
    && install -d -o callbridge -g callbridge -m 0700 /var/lib/callbridge
COPY --from=build /src/target/release/callbridge /usr/local/bin/callbridge
USER callbridge
WORKDIR /var/lib/callbridge
# The file's values apply first; these override them (see examples/callbridge.toml). The data
# folder (SQLite, secret.key) is a volume: back it up together.
ENV CALLBRIDGE_LISTEN=0.0.0.0:8080 \
    CALLBRIDGE_DATA_DIR=/var/lib/callbridge
VOLUME ["/var/lib/callbridge"]
EXPOSE 8080
# Ready: the store writes and reads (`callbridge probe` asks /readyz; the image has no curl).
HEALTHCHECK --interval=30s --timeout=6s --start-period=20s --retries=3 \
    CMD ["callbridge", "probe", "--url", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["callbridge"]
CMD ["serve", "--config", "/etc/callbridge/callbridge.toml"]
