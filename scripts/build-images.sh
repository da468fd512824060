#!/usr/bin/env bash
# Builds the local images, and pushes them to the platform registry when one is given (--push host:port, or
# FZ_REGISTRY); nothing outside is reachable, so nothing is pulled:
#   fangzhou/demo:1, :2, :3       from images/demo (static busybox httpd)
#   fangzhou/<name>:<version>, :<major>  for every images/<name>/image.env (real middleware from Debian's packages:
#                                  redis, etcd, nats), tagged with the upstream version of the installed package.
# Each middleware image is FROM scratch: the binaries of image.env, the libraries and loader `ldd` names for them,
# a static busybox for a shell and the probes. Each image carries the hash of its recipe (its images/ folder, this
# script, the Debian package version) as the label fangzhou.recipe: a tag present with the same hash is skipped, one
# whose recipe changed is rebuilt, and --force rebuilds everything; pushing
# is always done (the registry keeps the blobs it has, so a repeated push sends only what it lacks).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
force=false
registry="${FZ_REGISTRY:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=true ;;
    --push) registry="${2:?--push needs the registry address, e.g. 127.0.0.1:5000}"; shift ;;
    *) echo "usage: $0 [--force] [--push host:port]" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "build-images: $*"; }
warn() { echo "build-images: $*" >&2; }
have_tag() { docker image inspect "$1" >/dev/null 2>&1; }
# Whether the tag exists and was built from this recipe.
current() { [ "$(docker image inspect -f '{{ index .Config.Labels "fangzhou.recipe" }}' "$1" 2>/dev/null)" = "$2" ]; }
# A short hash of a folder's files (names and contents), this script and any extra words.
recipe_of() {
  local dir="$1"; shift
  { (cd "$dir" && find . -type f | LC_ALL=C sort | xargs sha256sum); sha256sum < "${BASH_SOURCE[0]}"; echo "$@"; } | sha256sum | cut -c1-16
}
# Every tag this run built or found, in the order built: what --push sends.
tags=()

contexts=()
trap 'for c in "${contexts[@]}"; do rm -rf "$c"; done' EXIT
new_context() {
  local dir
  dir="$(mktemp -d)"
  contexts+=("$dir")
  echo "$dir"
}

need_static_busybox() {
  if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
    warn "a static /bin/busybox is needed (apt-get install busybox-static)"
    exit 1
  fi
}

# The classic builder works on every engine we meet; BuildKit needs the buildx plugin.
build() {
  local out
  out="$(DOCKER_BUILDKIT=0 docker build -q "$@" 2>&1)" || { echo "$out" >&2; exit 1; }
}

# --- fangzhou/demo ------------------------------------------------------------------------------------------------
demo_context=""
demo_recipe="$(recipe_of "$repo/images/demo")"
for version in 1 2 3; do
  tag="fangzhou/demo:$version"
  tags+=("$tag")
  if ! $force && current "$tag" "$demo_recipe"; then continue; fi
  if [ -z "$demo_context" ]; then
    need_static_busybox
    demo_context="$(new_context)"
    cp -r "$repo/images/demo/." "$demo_context/"
    cp /bin/busybox "$demo_context/busybox"
  fi
  build --build-arg "VERSION=$version" --label "fangzhou.recipe=$demo_recipe" -t "$tag" "$demo_context"
  say "built $tag"
done

# --- middleware from Debian's packages -----------------------------------------------------------------------------

# Copies each binary (symlinks resolved, under its own name) and every library and loader `ldd` lists for it into
# rootfs, at the paths the dynamic loader looks them up.
stage_binaries() {
  local rootfs="$1"; shift
  local bin lib
  for bin in "$@"; do
    mkdir -p "$rootfs$(dirname "$bin")"
    cp -L "$bin" "$rootfs$bin"
    # "libx.so.1 => /lib/.../libx.so.1 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)", "linux-vdso.so.1 (0x...)"
    while read -r lib; do
      [ -e "$rootfs$lib" ] && continue
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }')
  done
}

# Copies whole folders (symlinks resolved: Debian links a JVM's conf/ into /etc) into rootfs at the same paths.
stage_trees() {
  local rootfs="$1"; shift
  local tree
  for tree in "$@"; do
    mkdir -p "$rootfs$(dirname "$tree")"
    # A dangling link (e.g. a JDK's src.zip whose package is not installed) cannot be copied and is not needed.
    find -L "$tree" -type l -printf '%P\n' 2>/dev/null | sed "s#^#$tree/#" >"$rootfs.dangling" || true
    if [ -d "$tree" ]; then
      # Into the folder, which staging the binaries may have made already (a launcher's own libraries live there).
      mkdir -p "$rootfs$tree"
      cp -rL "$tree/." "$rootfs$tree/" 2>/dev/null || [ -s "$rootfs.dangling" ] || { warn "could not copy $tree"; exit 1; }
    else
      cp -L "$tree" "$rootfs$tree"
    fi
  done
}

# The libraries and loader `ldd` lists for files already in rootfs (given by their path inside it).
stage_libraries() {
  local rootfs="$1"; shift
  local file lib
  for file in "$@"; do
    while read -r lib; do
      [ -e "$rootfs$lib" ] && continue
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done < <(ldd "$rootfs$file" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }')
  done
}

# Java archives and every jar their manifests' Class-Path names, transitively (Debian's jars name their
# dependencies by absolute path under /usr/share/java), read with busybox's unzip.
stage_jars() {
  local rootfs="$1"; shift
  local queue=("$@") jar dep
  while [ ${#queue[@]} -gt 0 ]; do
    jar="${queue[0]}"; queue=("${queue[@]:1}")
    [ -e "$rootfs$jar" ] && continue
    [ -e "$jar" ] || { warn "missing $jar (named by a Class-Path)"; continue; }
    mkdir -p "$rootfs$(dirname "$jar")"
    cp -L "$jar" "$rootfs$jar"
    for dep in $(/bin/busybox unzip -p "$jar" META-INF/MANIFEST.MF 2>/dev/null | tr -d '\r' | sed -e ':a' -e '$!N' -e 's/\n //' -e 'ta' -e 'P' -e 'D' | sed -n 's/^Class-Path: //p'); do
      case "$dep" in /*) queue+=("$dep") ;; *) queue+=("$(dirname "$jar")/$dep") ;; esac
    done
  done
}

# 5:7.0.15-1~deb12u10 -> 7.0.15; 3.4.23-4+b4 -> 3.4.23; 1.2+dfsg-1 -> 1.2
upstream_version() {
  local v="${1#*:}"
  echo "${v%%[-+~]*}"
}

build_middleware() {
  local dir="$1" name TITLE="" PACKAGES="" BINARIES="" TREES="" DROP="" JARS="" pkg debian_version version major context recipe missing=()
  name="$(basename "$dir")"
  # shellcheck disable=SC1091
  . "$dir/image.env"
  for pkg in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    warn "skipping fangzhou/$name: Debian packages missing: ${missing[*]} (scripts/ensure-docker.sh installs them as root)"
    return 0
  fi
  debian_version="$(dpkg-query -W -f='${Version}' "${PACKAGES%% *}")"
  version="$(upstream_version "$debian_version")"
  major="${version%%.*}"
  tags+=("fangzhou/$name:$version" "fangzhou/$name:$major")
  recipe="$(recipe_of "$dir" "$debian_version")"
  if ! $force && current "fangzhou/$name:$version" "$recipe" && current "fangzhou/$name:$major" "$recipe"; then return 0; fi
  need_static_busybox
  context="$(new_context)"
  cp -r "$dir/." "$context/"
  rm -f "$context/image.env" "$context/README.md"
  cp /bin/busybox "$context/busybox"
  # shellcheck disable=SC2086
  stage_binaries "$context/rootfs" $BINARIES
  # shellcheck disable=SC2086
  stage_trees "$context/rootfs" $TREES
  # shellcheck disable=SC2086
  for drop in $DROP; do rm -rf "${context:?}/rootfs$drop"; done
  # Shared objects that came with the trees need their libraries too (what DROP removed needs none).
  # shellcheck disable=SC2046
  [ -z "$TREES" ] || stage_libraries "$context/rootfs" $(cd "$context/rootfs" && find . -name '*.so' -type f | sed 's#^\.##')
  # shellcheck disable=SC2086
  stage_jars "$context/rootfs" $JARS
  build --build-arg "VERSION=$version" --build-arg "DEBIAN_VERSION=$debian_version" --label "fangzhou.recipe=$recipe" \
    -t "fangzhou/$name:$version" -t "fangzhou/$name:$major" "$context"
  say "built fangzhou/$name:$version and :$major ($TITLE, Debian $debian_version)"
}

for env_file in "$repo"/images/*/image.env; do
  [ -e "$env_file" ] || continue
  build_middleware "$(dirname "$env_file")"
done

# A rebuild leaves the previous images untagged; drop those (only ours, by label).
if [ "$(docker images -q --filter dangling=true --filter "label=org.opencontainers.image.title" | head -1)" != "" ]; then
  docker image prune -f --filter "label=org.opencontainers.image.title=fangzhou demo" >/dev/null
  for env_file in "$repo"/images/*/image.env; do
    [ -e "$env_file" ] || continue
    title="$(TITLE=""; . "$env_file"; echo "$TITLE")"
    docker image prune -f --filter "label=org.opencontainers.image.title=$title" >/dev/null
  done
fi

# --- the platform registry -----------------------------------------------------------------------------------------
# fz pushes over the registry's HTTP API, so this engine need not trust the registry's address.
if [ -n "$registry" ] && [ ${#tags[@]} -gt 0 ]; then
  (cd "$repo" && node --import tsx cli/fz.ts image push --registry "$registry" "${tags[@]}") >/dev/null || exit 1
  say "pushed ${#tags[@]} images to $registry"
fi
