# The Outpost image: one static binary (musl) in an image built FROM scratch, run as a
# non-root user. Every node of compose.yaml runs it with its role:
#   docker build -t outpost .
#   docker run --rm outpost --help
# Stage 1 expects an image with the Rust toolchain (docker.io/library/rust, Debian-based);
# stage 2 needs no base image at all. tests/it/containers.rs builds the same runtime layout
# from the binary the tests built (deploy/docker/prebuilt.Dockerfile), as no registry can be
# reached there.
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin outpost \
 && mkdir -p /rootfs/usr/local/bin /rootfs/etc/outpost /rootfs/usr/share/outpost \
        /rootfs/tmp /state \
 && cp target/x86_64-unknown-linux-musl/release/outpost /rootfs/usr/local/bin/ \
 && cp config/outpost.toml /rootfs/etc/outpost/ \
 && cp -r origin/demo /rootfs/usr/share/outpost/demo \
 && chmod 1777 /rootfs/tmp

FROM scratch
COPY --from=build /rootfs /
# Created owned by the user (a new volume takes the owner of the directory it is mounted on).
COPY --from=build --chown=10001:10001 /state /var/lib/outpost
# The state directory: the local CA, certificates, admin token, workers, disk cache.
ENV OUTPOST_STATE_DIR=/var/lib/outpost
VOLUME /var/lib/outpost
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/outpost"]
CMD ["up", "--config", "/etc/outpost/outpost.toml"]
