# The runtime stage of ../../Dockerfile, from a binary built outside Docker: the context holds
# `rootfs/` (the binary, the shared libraries it links, the demo site) and an empty `state/`,
# made by tests/it/containers.rs from the binary the tests built. No base image is pulled.
FROM scratch
COPY rootfs/ /
# Made here, not in rootfs/, so that it is created owned by the user (a new volume takes the
# owner of the directory it is mounted on).
COPY --chown=10001:10001 state /var/lib/outpost
ENV OUTPOST_STATE_DIR=/var/lib/outpost
VOLUME /var/lib/outpost
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/outpost"]
CMD ["up", "--config", "/etc/outpost/outpost.toml"]
