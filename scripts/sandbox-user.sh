#!/usr/bin/env bash
# Create the system user the sandboxed jobs run as: `grader-sandbox`, no home folder, no login
# shell, its own group. A grader running as root starts every job as this user (bwrap maps the
# job's uid 65534 to it; the docker backend runs the container as its uid:gid), so a job never
# holds host uid 0 and cannot chmod or chown a host file it sees. Also makes the root-owned
# /var/lib/grader-sandbox/views folder where the grader binds host paths the user cannot reach
# (grader/sandbox/views.py). Safe to run again: nothing is changed when both are there.
set -euo pipefail
user=${GRADER_SANDBOX_USER:-grader-sandbox}
views=/var/lib/grader-sandbox/views

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"

if ! getent passwd "$user" >/dev/null; then
  nologin=$(command -v nologin || echo /usr/sbin/nologin)
  $sudo useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell "$nologin" --comment "cnn-grader sandboxed jobs" "$user"
  printf '\033[1m==> created system user %s (uid %s)\033[0m\n' "$user" "$(id -u "$user")"
fi
$sudo install -d -o root -g root -m 0755 /var/lib/grader-sandbox "$views"
