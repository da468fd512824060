#!/usr/bin/env bash
# Builds the local images (no registry is reachable): fangzhou/demo:1, :2, :3 from images/demo.
# Tags already present are skipped unless --force is given.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
force=false
case "${1:-}" in
  --force) force=true ;;
  "") ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

context=""
trap '[ -z "$context" ] || rm -rf "$context"' EXIT

for version in 1 2 3; do
  tag="fangzhou/demo:$version"
  if ! $force && docker image inspect "$tag" >/dev/null 2>&1; then continue; fi
  if [ -z "$context" ]; then
    if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
      echo "build-images: a static /bin/busybox is needed (apt-get install busybox-static)" >&2
      exit 1
    fi
    context="$(mktemp -d)"
    cp -r "$repo/images/demo/." "$context/"
    cp /bin/busybox "$context/busybox"
  fi
  # The classic builder works on every engine we meet; BuildKit needs the buildx plugin.
  out="$(DOCKER_BUILDKIT=0 docker build -q --build-arg "VERSION=$version" -t "$tag" "$context" 2>&1)" \
    || { echo "$out" >&2; exit 1; }
  echo "build-images: built $tag"
done

# A forced rebuild leaves the previous images untagged; drop those (only ours, by label).
if $force; then
  docker image prune -f --filter "label=org.opencontainers.image.title=fangzhou demo" >/dev/null
fi
