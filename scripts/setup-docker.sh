#!/usr/bin/env bash
# Make the docker sandbox backend usable on this Debian machine (root or sudo):
#   1. install docker.io and debootstrap (apt-get update first) when they are missing;
#   2. start dockerd in the background when no engine answers (log: var/docker/dockerd.log);
#   3. build the runner image from docker/ (default cnn-grader-runner:latest, or
#      $GRADER_DOCKER_IMAGE) on a Debian bookworm base made locally with debootstrap, since no
#      registry image can be pulled here. The debootstrap result is cached as a tarball in
#      var/docker/, and the build is skipped when the image carries the hash of docker/. The base
#      is also tagged cnn-grader-base:bookworm, the BASE_IMAGE of docker/compose.yaml's images
#      here (GRADER_BASE_IMAGE; scripts/setup-compose.sh installs Compose).
# Safe to run again: each step is skipped when its result is there. Exits non-zero with the
# reason on the last line when the engine cannot start or the image cannot be built.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${GRADER_DOCKER_IMAGE:-cnn-grader-runner:latest}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
cache=var/docker
log_file=$cache/dockerd.log
hash_label=org.cnn-grader.docker-hash
base_alias=cnn-grader-base:$suite  # also given to the base image, for docker/compose.yaml

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'setup-docker: %s\n' "$*" >&2; exit 1; }

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
mkdir -p "$cache"

# --- packages ----------------------------------------------------------------------------------
packages=()
command -v dockerd >/dev/null || packages+=(docker.io)
command -v docker >/dev/null || packages+=(docker.io)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || packages+=(debootstrap)
if [ ${#packages[@]} -gt 0 ]; then
  readarray -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
  log "installing Debian packages: ${packages[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${packages[@]}" >/dev/null
fi

# --- the sandbox's user ---------------------------------------------------------------------------
# Containers run as its uid:gid (grader/sandbox/docker.py); see scripts/sandbox-user.sh.
scripts/sandbox-user.sh

# --- engine ------------------------------------------------------------------------------------
engine_up() { docker info >/dev/null 2>&1; }
if ! engine_up; then
  log "starting dockerd (log: $log_file)"
  # Sandbox containers and the image build use --network none, so the engine needs no bridge
  # and no iptables, which keeps it starting on machines without netfilter.
  offset=$(stat -c %s "$log_file" 2>/dev/null || echo 0)
  start="setsid nohup dockerd --bridge=none --iptables=false >>'$log_file' 2>&1 </dev/null"
  pid=$($sudo sh -c "$start & echo \$!")
  for _ in $(seq 1 120); do
    engine_up && break
    [ -d "/proc/$pid" ] || break  # dockerd gave up: no use waiting
    sleep 0.5
  done
  if ! engine_up; then
    said=$(tail -c +$((offset + 1)) "$log_file" | grep -v '^[[:space:]]*$' || true)
    printf '%s\n' "$said" | tail -n 15 >&2
    reason=$(printf '%s\n' "$said" | grep -E 'level=(fatal|error)|failed to start' | tail -n 1 || true)
    [ -d "/proc/$pid" ] || die "dockerd exited: ${reason:-no message} (log: $log_file)"
    die "dockerd (pid $pid) did not answer within 60 s: $(docker info 2>&1 | tail -n 1)"
  fi
fi
log "docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null) is running"

# --- image -------------------------------------------------------------------------------------
# The hash covers what goes into the image: its Dockerfile and package list (the other files of
# docker/ belong to compose.yaml's images).
docker_hash=$(cd docker && sha256sum Dockerfile runner-packages.txt | sha256sum | cut -c1-16)
package_list=$(grep -v '^#' docker/runner-packages.txt | paste -sd, -)
package_hash=$(printf '%s %s %s' "$suite" "$mirror" "$package_list" | sha256sum | cut -c1-12)
base=cnn-grader-base:$suite-$package_hash
built=$(docker image inspect "$image" --format "{{ index .Config.Labels \"$hash_label\" }}" \
  2>/dev/null || true)
if [ "$built" = "$docker_hash" ] && docker image inspect "$base" >/dev/null 2>&1; then
  docker tag "$base" "$base_alias"
  log "runner image $image is up to date (docker/ hash $docker_hash); base $base_alias"
  exit 0
fi
tarball=$cache/debootstrap-$suite-$package_hash.tar
started=$(date +%s)
if ! docker image inspect "$base" >/dev/null 2>&1; then
  if [ ! -s "$tarball" ]; then
    log "debootstrap $suite (minbase + runner libraries) from $mirror; cached in $tarball"
    root=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap '$sudo rm -rf "$root"' EXIT
    debootstrap=$(command -v debootstrap || echo /usr/sbin/debootstrap)
    if ! $sudo "$debootstrap" --variant=minbase --include="$package_list" "$suite" "$root" "$mirror" \
        >"$cache/debootstrap.log" 2>&1; then
      tail -n 15 "$cache/debootstrap.log" >&2
      die "debootstrap failed (full log: $cache/debootstrap.log)"
    fi
    $sudo tar -C "$root" --numeric-owner -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    $sudo rm -rf "$root"
    trap - EXIT
  fi
  log "importing $tarball as $base"
  docker import --message "debootstrap $suite minbase" "$tarball" "$base" >/dev/null
fi
# A stable name for the other images' BASE_IMAGE (docker/compose.yaml: GRADER_BASE_IMAGE).
docker tag "$base" "$base_alias"

log "building $image from docker/ on $base"
# DOCKER_BUILDKIT=0: the classic builder is in every engine; BuildKit needs the buildx plugin.
if ! DOCKER_BUILDKIT=0 docker build --quiet --network none --build-arg "BASE_IMAGE=$base" \
    --label "$hash_label=$docker_hash" --tag "$image" docker/ >"$cache/build.log" 2>&1; then
  tail -n 15 "$cache/build.log" >&2
  die "docker build of $image failed (full log: $cache/build.log)"
fi
# The userland stage is only a step: drop its images (the base and the runner image stay).
docker image prune --force --filter label=org.cnn-grader.stage=userland >/dev/null
log "built $image in $(( $(date +%s) - started )) s"
