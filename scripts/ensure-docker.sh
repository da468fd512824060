#!/usr/bin/env bash
# Makes sure a Docker engine is reachable and the local images are built (and pushed to the platform registry when
# FZ_REGISTRY names one; nothing outside is reachable, so nothing is pulled). Idempotent and quick when everything is already there; installs what is missing
# when run as root on Debian (CI machines start with no engine).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "ensure-docker: $*"; }
fail() { echo "ensure-docker: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

apt_updated=false
apt_install() {
  if ! $apt_updated; then
    say "apt-get update"
    apt-get update -qq >/dev/null
    apt_updated=true
  fi
  say "installing $*"
  local out
  out="$(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" 2>&1)" || { echo "$out" >&2; exit 1; }
}

engine_up() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }
# Debian's plain `busybox` package also installs /bin/busybox, but linked against libc: useless in a scratch image.
static_busybox() { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }

# The image builds copy the static busybox into FROM-scratch images.
if ! static_busybox; then
  is_root || fail "/bin/busybox is missing or not static; install it with: sudo apt-get install busybox-static"
  apt_install busybox-static
fi

# The middleware images (images/*/image.env) are built from Debian's packages installed on this machine, and
# docker-registry is the platform's image registry (the stack runs it). Installed with services kept from starting:
# the servers run in containers or under the stack, not as the machine's services.
missing_packages=()
dpkg-query -W -f='${Status}' docker-registry 2>/dev/null | grep -q "ok installed" || missing_packages+=(docker-registry)
for env_file in "$repo"/images/*/image.env; do
  [ -e "$env_file" ] || continue
  for pkg in $(PACKAGES=""; . "$env_file"; echo "$PACKAGES"); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing_packages+=("$pkg")
  done
done
if [ ${#missing_packages[@]} -gt 0 ]; then
  if is_root; then
    made_policy=false
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      # invoke-rc.d and deb-systemd-invoke start nothing while this says 101 (the trap cleans up if apt fails).
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
      made_policy=true
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt_install "${missing_packages[@]}"
    if $made_policy; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  else
    say "not root: cannot install ${missing_packages[*]}; what needs them is skipped (sudo apt-get install ${missing_packages[*]})"
  fi
fi

if ! engine_up; then
  # A remote engine named by DOCKER_HOST cannot be fixed by starting a local one.
  if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
    fail "no Docker engine answers at DOCKER_HOST=${DOCKER_HOST}"
  fi
  if ! is_root; then
    if [ -S /var/run/docker.sock ] && [ ! -w /var/run/docker.sock ]; then
      fail "a Docker engine runs but $(id -un) may not use /var/run/docker.sock; join the docker group (sudo usermod -aG docker $(id -un), then log in again)"
    fi
    fail "no Docker engine is reachable at /var/run/docker.sock and I am not root; start dockerd (or run this script as root)"
  fi
  { command -v dockerd && command -v docker; } >/dev/null || apt_install docker.io

  # The pid file, not pgrep: procps is not on a minimal Debian.
  if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    say "dockerd is already running; waiting for it to answer"
  else
    mkdir -p "$repo/.fangzhou"
    # Leave the machine's firewall alone: containers talk over user-defined bridges and published ports.
    # setsid + nohup: the engine outlives this script and the session that ran it.
    setsid nohup dockerd --iptables=false --ip-masq=false </dev/null >"$repo/.fangzhou/dockerd.log" 2>&1 &
    say "started dockerd (pid $!), log in .fangzhou/dockerd.log"
  fi
  for _ in $(seq 1 60); do
    engine_up && break
    sleep 0.5
  done
  engine_up || fail "dockerd did not answer within 30 s; see .fangzhou/dockerd.log"
  say "Docker engine $(docker version --format '{{.Server.Version}}') is up"
fi

"$repo/scripts/build-images.sh"
