# Redis from Debian's package, for compose.yaml where no registry image can be pulled. With a
# registry, the official image (redis:7) does the same: set REDIS_IMAGE and leave this unused.
#
#   docker build -f docker/redis.Dockerfile -t cnn-grader-redis .      (repository root)
#
# REDIS_PASSWORD (required) becomes `requirepass`; data (the queue, append-only) in /data.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN set -eu; apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server; \
    rm -rf /var/lib/apt/lists/*; \
    mkdir -p /data; chown redis:redis /data
LABEL org.cnn-grader.image=redis
USER redis
WORKDIR /data
EXPOSE 6379
VOLUME /data
# The password goes in through a configuration file (mode 600), not the command line, where `ps`
# on the host would show it.
CMD ["sh", "-c", "if [ -z \"${REDIS_PASSWORD:-}\" ]; then echo 'redis: set REDIS_PASSWORD' >&2; exit 2; fi; umask 077; printf 'requirepass \"%s\"\\n' \"$REDIS_PASSWORD\" > /tmp/redis.conf; exec redis-server /tmp/redis.conf --bind 0.0.0.0 --port 6379 --dir /data --appendonly yes"]
