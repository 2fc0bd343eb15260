#!/usr/bin/env bash
# Build the operator's container image from the repository's Dockerfile with podman, as CI does.
#
#   bash hack/image.sh setup          podman, runc and mmdebstrap (Debian's packages), their configuration
#                                     and the Debian-built Python base image; nothing is redone when present
#   bash hack/image.sh build          setup, then `podman build`; prints the image reference on the last line
#   bash hack/image.sh podman ARGS    podman with this configuration (e.g. `podman images`, `podman run`)
#   bash hack/image.sh env            the environment every podman call here uses, as `export` lines
#
# Everything lives under ~/.cache/cleanup-operator/podman (CLEANUP_OPERATOR_CACHE moves it): one
# containers.conf, one storage.conf and one registries.conf, chosen through CONTAINERS_CONF,
# CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF, so no podman call depends on /etc or on an
# earlier session, and no command line mixes `--root` flags with a storage.conf. The files are written
# every time (idempotent). Why each setting:
#   runtime runc          the default, crun, fails on this kernel ("cgroups in hybrid mode not supported")
#   default ulimits 1024  podman's defaults exceed the machine's hard limits
#   no registries         the base image is built here from Debian's packages, never pulled
#
# The Dockerfile's default base is the official slim Python image (what users build against). CI, which
# reaches no container registry, builds the same Dockerfile against a Python base assembled with
# mmdebstrap from Debian's archive (the mirrors apt uses on this machine) and `podman import`: built once,
# then reused. `podman build` reuses its layer cache, so an unchanged tree builds in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${CLEANUP_OPERATOR_CACHE:-$HOME/.cache/cleanup-operator}"
PODMAN_HOME="$CACHE/podman"
IMAGE="${IMAGE:-localhost/cleanup-operator:dev}"
BASE_SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,ca-certificates
# The tag names what the base is made of: a change to the suite or the packages builds a new one.
BASE_IMAGE="localhost/cleanup-operator-base:$BASE_SUITE-$(printf '%s' "$BASE_PACKAGES" | sha256sum | cut -c1-8)"
# The host's CA bundle, mounted into the build (pip inside reaches PyPI through it).
HOST_CA=/etc/ssl/certs/ca-certificates.crt

export CONTAINERS_CONF="$PODMAN_HOME/containers.conf"
export CONTAINERS_STORAGE_CONF="$PODMAN_HOME/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$PODMAN_HOME/registries.conf"

log() { echo "[image] $*" >&2; }

put() { # file: stdin becomes its content, replaced atomically and only when it differs
  local tmp="$1.$$"
  cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

install_engine() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  # podman's --init (the tests' stand-in for the kubelet's pid 1 reaping) runs catatonit, which
  # podman only recommends: --no-install-recommends leaves it out.
  [ -x /usr/libexec/podman/catatonit ] || missing+=(catatonit)
  [ "${#missing[@]}" -eq 0 ] && return
  if [ "$(id -u)" != 0 ]; then
    log "missing ${missing[*]}: install them (sudo apt-get install ${missing[*]}) and run again"
    exit 1
  fi
  log "installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
  mkdir -p "$PODMAN_HOME"/{storage,run,tmp,volumes}
  put "$CONTAINERS_CONF" <<EOF
# Written by hack/image.sh on every run; edit the script, not this file.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$PODMAN_HOME/events.log"
tmp_dir = "$PODMAN_HOME/tmp"
volume_path = "$PODMAN_HOME/volumes"
EOF
  put "$CONTAINERS_STORAGE_CONF" <<EOF
# Written by hack/image.sh on every run; edit the script, not this file.
[storage]
driver = "overlay"
graphroot = "$PODMAN_HOME/storage"
runroot = "$PODMAN_HOME/run"
EOF
  put "$CONTAINERS_REGISTRIES_CONF" <<'EOF'
# Written by hack/image.sh: no registry is searched or reached; every image is built or imported here.
unqualified-search-registries = []
short-name-mode = "enforcing"
EOF
}

build_base() {
  if podman image exists "$BASE_IMAGE"; then log "base $BASE_IMAGE cached"; return; fi
  # The same mirrors apt uses on this machine (mmdebstrap reads a sources file given as its mirror).
  local mirror=()
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [ -s "$f" ]; then mirror=("$f"); break; fi
  done
  log "building base $BASE_IMAGE with mmdebstrap ($BASE_SUITE: $BASE_PACKAGES; first run only)"
  local started=$SECONDS
  local tar="$PODMAN_HOME/base.tar"
  mmdebstrap --quiet --variant=apt --include="$BASE_PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    "$BASE_SUITE" "$tar" "${mirror[@]}" </dev/null
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$tar" "$BASE_IMAGE" >/dev/null
  rm -f "$tar"
  log "base built in $((SECONDS - started)) s"
}

setup() {
  install_engine
  write_config
  build_base
}

build() {
  setup
  local ca=()
  [ -s "$HOST_CA" ] && ca=(-v "$HOST_CA:$HOST_CA:ro")
  log "building $IMAGE from the Dockerfile (PYTHON_IMAGE=$BASE_IMAGE)"
  local started=$SECONDS
  podman build --quiet --pull=never --network host "${ca[@]}" \
    --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
    --tag "$IMAGE" "$ROOT" >/dev/null
  log "built in $((SECONDS - started)) s, $(podman image inspect --format "{{.Size}}" "$IMAGE" | numfmt --to=si)B"
  # Each change of the tree leaves the previous build's layers behind: drop those unused for a week
  # (the current build's cache is younger), so the storage does not grow without bound.
  podman image prune --force --filter until=168h >/dev/null
  echo "$IMAGE"
}

case "${1:-build}" in
  setup) setup ;;
  build) build ;;
  podman)
    shift
    write_config
    exec podman "$@"
    ;;
  env)
    echo "export CONTAINERS_CONF='$CONTAINERS_CONF'"
    echo "export CONTAINERS_STORAGE_CONF='$CONTAINERS_STORAGE_CONF'"
    echo "export CONTAINERS_REGISTRIES_CONF='$CONTAINERS_REGISTRIES_CONF'"
    ;;
  *)
    echo "usage: $0 [setup|build|podman ARGS...|env]" >&2
    exit 2
    ;;
esac
