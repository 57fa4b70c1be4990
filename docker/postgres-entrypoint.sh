#!/bin/sh
# Make the cluster on the first start (empty PGDATA), then run the server in the foreground.
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-entrypoint: set POSTGRES_PASSWORD" >&2
    exit 2
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    printf '%s\n' "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    printf '%s\n' 'host all all all scram-sha-256' >> "$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        # A private socket folder, so nothing connects before the database exists.
        sockets=$(mktemp -d)
        pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $sockets" -w start >/dev/null
        createdb -h "$sockets" -U "$POSTGRES_USER" "$POSTGRES_DB"
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
        rmdir "$sockets"
    fi
    echo "postgres-entrypoint: made the cluster in $PGDATA with database $POSTGRES_DB"
fi
exec "$@"
