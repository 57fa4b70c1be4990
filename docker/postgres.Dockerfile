# PostgreSQL from Debian's package, for compose.yaml where no registry image can be pulled.
# With a registry, use the official image instead (postgres:15, same variables, same volume path):
# set POSTGRES_IMAGE and leave this file unused.
#
#   docker build -f docker/postgres.Dockerfile -t cnn-grader-postgres .      (repository root)
#
# Variables (as the official image's): POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB; PGDATA is
# /var/lib/postgresql/data (the volume). The cluster is made on the first start only.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN set -eu; apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15; \
    rm -rf /var/lib/apt/lists/*; \
    mkdir -p /var/lib/postgresql/data /run/postgresql; \
    chown -R postgres:postgres /var/lib/postgresql /run/postgresql; chmod 0700 /var/lib/postgresql/data
COPY docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:${PATH} PGDATA=/var/lib/postgresql/data
LABEL org.cnn-grader.image=postgres
USER postgres
EXPOSE 5432
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]
