#!/usr/bin/env bash
# Make sure a Docker engine is running on this machine, as root.
#
# - installs Debian's `docker.io` (and `debootstrap`, used by
#   scripts/postgres-image.sh) with apt-get when `dockerd` is missing;
# - starts `dockerd` in the background when `docker info` does not answer,
#   with its log in $ANNALS_DOCKERD_LOG (default /tmp/annals-dockerd.log);
# - waits for `docker info` for at most $ANNALS_DOCKER_WAIT seconds (default 60).
#
# Exits non-zero with a clear message when the engine cannot be started: the
# container tests must fail loudly, never skip silently.
set -euo pipefail

log=${ANNALS_DOCKERD_LOG:-/tmp/annals-dockerd.log}
wait_s=${ANNALS_DOCKER_WAIT:-60}

say() { echo "docker-up: $*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

if docker info >/dev/null 2>&1; then
    say "docker engine already running"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "dockerd/debootstrap missing and not root: install docker.io and debootstrap"
    say "installing docker.io and debootstrap with apt-get"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt_log=${log%.log}-apt.log
    apt-get update -qq >"$apt_log" 2>&1 || {
        tail -n 20 "$apt_log" >&2
        die "apt-get update failed (log: $apt_log)"
    }
    apt-get install -y -qq docker.io debootstrap >>"$apt_log" 2>&1 || {
        tail -n 20 "$apt_log" >&2
        die "apt-get install docker.io debootstrap failed (log: $apt_log)"
    }
fi

# The engine we started, if any: watched by pid, not by name. A name check
# races the fork/exec of the background job (the child is still "bash" for a
# moment) and once failed a fresh CI machine with an empty log.
started=
if ! pgrep -x dockerd >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "dockerd is not running and only root can start it"
    say "starting dockerd (log: $log)"
    # setsid: keep the daemon out of the caller's process group so that a
    # job-control kill of the caller does not take the engine with it.
    setsid dockerd >"$log" 2>&1 </dev/null &
    started=$!
fi

engine_alive() {
    { [ -n "$started" ] && kill -0 "$started" 2>/dev/null; } || pgrep -x dockerd >/dev/null 2>&1
}

deadline=$((SECONDS + wait_s))
until docker info >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        say "last lines of $log:"
        tail -n 30 "$log" >&2 2>/dev/null || true
        die "docker engine did not answer 'docker info' within ${wait_s}s"
    fi
    if ! engine_alive; then
        say "last lines of $log:"
        tail -n 30 "$log" >&2 2>/dev/null || true
        die "dockerd exited while starting"
    fi
    sleep 0.5
done
say "docker engine ready ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
