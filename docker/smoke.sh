#!/usr/bin/env bash
# Build the AVTS image without a Docker daemon and run the whole pipeline inside it:
#   (a) make a local Debian bookworm base image (debootstrap -> tar -> buildah), unless it is there already;
#   (b) build docker/Dockerfile on it with buildah (chroot isolation), torch as the CPU wheel;
#   (c) in the image, as the non-root user: avts-synth (tiny videos) -> avts-ingest -> avts-train (one tiny
#       CPU epoch) -> check runs/smoke/checkpoints/last.pt;
#   (d) print the image size and the times.
# Exits non-zero on any failure; rerunnable (the base image and the build's layer cache are reused).
#
#   sudo apt-get install -y buildah debootstrap     # Debian/Ubuntu; needs root (buildah storage, debootstrap)
#   docker/smoke.sh                                 # build + smoke test
#   docker/smoke.sh --relock                        # first refresh docker/constraints.txt and
#                                                   # docker/torch-constraints.txt from an unpinned build
#
# Settings (environment):
#   SMOKE_DIR     scratch folder (default /tmp/avts-smoke; the rootfs tarball lives there while importing)
#   BASE_IMAGE    local base image name (default localhost/avts-base:bookworm); made when missing
#   IMAGE         image to build (default localhost/avts:smoke)
#   MIRROR        Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   TORCH_SPEC    torch to install in the image (default torch==2.13.0+cpu)
#   WHEELS        host folder of wheels mounted into the build (/tmp/avts-build/wheels) and searched first (default
#                 /opt/wheels when it exists). Without it torch comes from the PyTorch CPU index instead.
#   CA_BUNDLE     host CA bundle mounted into the build for pip's TLS (default: PIP_CERT, else the host's
#                 /etc/ssl/certs/ca-certificates.crt; needed behind a TLS-intercepting proxy; empty: none)
#   PIP_ARGS      overrides the pip options passed to the build (default: from WHEELS and CA_BUNDLE, see above)
#   ENGINE        avts-ingest engine in the smoke run: ray (default) or processes
#   S3_PYTHON     a host Python with moto[server] (default: .venv/bin/python when it exists, else python3): it
#                 serves a local S3 on the host's loopback, which the chroot-isolated container shares, and the
#                 smoke run then also ingests to s3:// and trains from there; without moto that step is skipped
#                 (and says so)
#   REBUILD_BASE  1: remake the base image even if it exists
#   OCI_ARCHIVE   when set, a path: the tested image is also written there as an OCI archive, for
#                 `apptainer build avts.sif oci-archive:$OCI_ARCHIVE` on a cluster (see docker/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE_DIR=${SMOKE_DIR:-/tmp/avts-smoke}
BASE_IMAGE=${BASE_IMAGE:-localhost/avts-base:bookworm}
IMAGE=${IMAGE:-localhost/avts:smoke}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0+cpu}
ENGINE=${ENGINE:-ray}
REBUILD_BASE=${REBUILD_BASE:-0}
OCI_ARCHIVE=${OCI_ARCHIVE:-}
RELOCK=0
[[ ${1:-} == --relock ]] && RELOCK=1
[[ $# -gt RELOCK ]] && { echo "usage: $0 [--relock]" >&2; exit 2; }

if [[ -z ${WHEELS+set} && -d /opt/wheels ]]; then WHEELS=/opt/wheels; fi
WHEELS=${WHEELS:-}
if [[ -z ${CA_BUNDLE+set} ]]; then
  CA_BUNDLE=${PIP_CERT:-}
  [[ -z $CA_BUNDLE && -f /etc/ssl/certs/ca-certificates.crt ]] && CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
fi
if [[ -z ${PIP_ARGS+set} ]]; then
  if [[ -n $WHEELS ]]; then PIP_ARGS="--find-links /tmp/avts-build/wheels"
  else PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"; fi
  [[ -n $CA_BUNDLE ]] && PIP_ARGS="$PIP_ARGS --cert /tmp/avts-build/ca.crt"
fi

die() { echo "smoke: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root (buildah's system storage and debootstrap need it)"
for tool in buildah debootstrap tar; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install -y buildah debootstrap"
done
export BUILDAH_ISOLATION=chroot  # no daemon, no runtime namespaces needed (works inside VMs and containers)
mkdir -p "$SMOKE_DIR"
now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# (a) the base image: a minimal Debian bookworm, as debian:bookworm-slim would be (no registry here).
base_s="reused"
if [[ $REBUILD_BASE == 1 ]] || ! buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  t0=$(now)
  rootfs="$SMOKE_DIR/rootfs"
  rm -rf "$rootfs" "$SMOKE_DIR/rootfs.tar"
  echo "== debootstrap bookworm (minbase) from $MIRROR"
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$SMOKE_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$SMOKE_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $SMOKE_DIR/debootstrap.log)"; }
  security=${MIRROR%/debian}/debian-security
  [[ $MIRROR == */debian ]] && echo "deb $security bookworm-security main" >>"$rootfs/etc/apt/sources.list"
  echo "deb $MIRROR bookworm-updates main" >>"$rootfs/etc/apt/sources.list"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar --numeric-owner --xattrs -C "$rootfs" --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* \
    -cf "$SMOKE_DIR/rootfs.tar" .
  ctr=$(buildah from --pull=never scratch)
  buildah add --quiet "$ctr" "$SMOKE_DIR/rootfs.tar" / >/dev/null
  buildah config --cmd /bin/bash \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 "$ctr"
  buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs" "$SMOKE_DIR/rootfs.tar"
  base_s=$(seconds "$t0" "$(now)")
  echo "== base image $BASE_IMAGE made in ${base_s} s"
else
  echo "== base image $BASE_IMAGE exists (REBUILD_BASE=1 remakes it)"
fi

# (b) the image
volumes=()
[[ -n $WHEELS ]] && volumes+=(--volume "$WHEELS:/tmp/avts-build/wheels:ro")
[[ -n $CA_BUNDLE ]] && volumes+=(--volume "$CA_BUNDLE:/tmp/avts-build/ca.crt:ro")
build() {  # build <tag> [extra build args...]
  local tag=$1; shift
  buildah bud --isolation chroot --layers --force-rm --pull=never -f docker/Dockerfile -t "$tag" \
    --build-arg BASE="$BASE_IMAGE" --build-arg TORCH_SPEC="$TORCH_SPEC" --build-arg PIP_ARGS="$PIP_ARGS" \
    "${volumes[@]}" "$@" .
}

if [[ $RELOCK == 1 ]]; then
  echo "== --relock: unpinned build, then lock what it resolved"
  touch docker/constraints.txt docker/torch-constraints.txt  # the Dockerfile copies them (unused with PIN=no)
  build "$IMAGE-unpinned" --build-arg PIN=no
  ctr=$(buildah from --pull=never "$IMAGE-unpinned")
  trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
  buildah run "$ctr" -- python - >"$SMOKE_DIR/lock.out" <<'EOF'
"""Split the installed closure of avts[ray,s3] into the avts lock and the torch lock (what only torch needs)."""
import platform
import tomllib
from importlib import metadata
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name

def closure(name, extras=(), skip=()):
    seen = {}
    todo = [(name, set(extras))]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in skip or (key in seen and extras <= seen[key][1]):
            continue
        dist = metadata.distribution(name)
        seen.setdefault(key, [dist, set()])[1].update(extras)
        for line in dist.requires or []:
            req = Requirement(line)
            envs = [{"extra": e} for e in [""] + sorted(extras)]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, set(req.extras)))
    return {key: value[0] for key, value in seen.items()}

main = closure("avts", ["ray", "s3"], skip={"torch"})
with open("/opt/avts/src/pyproject.toml", "rb") as file:  # the build backend is pinned too
    for line in tomllib.load(file)["build-system"]["requires"]:
        main.update(closure(Requirement(line).name))
torch_only = {k: d for k, d in closure("torch").items() if k not in main and k != "torch"}
main.pop("avts")
for label, dists in (("MAIN", main), ("TORCH", torch_only)):
    for key in sorted(dists):
        print(label, f"{dists[key].metadata['Name']}=={dists[key].version}")
print("PYTHON", platform.python_version())
EOF
  buildah rm "$ctr" >/dev/null; trap - EXIT
  python_version=$(awk '$1 == "PYTHON" { print $2 }' "$SMOKE_DIR/lock.out")
  header="# Generated by docker/smoke.sh --relock on $(date -u +%Y-%m-%d) (Python $python_version, Debian bookworm base)."
  { echo "$header"
    echo "# Pins every package that 'pip install .[ray,s3]' installs, except torch and what only torch needs"
    echo "# (docker/torch-constraints.txt), so that it also applies on a CUDA base whose torch is kept."
    awk '$1 == "MAIN" { print $2 }' "$SMOKE_DIR/lock.out"; } >docker/constraints.txt
  { echo "$header"
    echo "# torch's own dependencies, used only when the image installs torch (--build-arg TORCH_SPEC=...)."
    awk '$1 == "TORCH" { print $2 }' "$SMOKE_DIR/lock.out"; } >docker/torch-constraints.txt
  echo "== wrote docker/constraints.txt ($(grep -vc '^#' docker/constraints.txt) pins)" \
       "and docker/torch-constraints.txt ($(grep -vc '^#' docker/torch-constraints.txt) pins)"
  buildah rmi "$IMAGE-unpinned" >/dev/null 2>&1 || true
fi

echo "== building $IMAGE on $BASE_IMAGE (TORCH_SPEC=$TORCH_SPEC, PIP_ARGS=$PIP_ARGS${WHEELS:+, /wheels=$WHEELS}${CA_BUNDLE:+, CA=$CA_BUNDLE})"
t0=$(now)
build "$IMAGE"
build_s=$(seconds "$t0" "$(now)")

# (c) the pipeline inside the image, in a throwaway working container, as the image's (non-root) user; with a
# local S3 server on the host's loopback (moto), also to and from object storage.
S3_PYTHON=${S3_PYTHON:-}
[[ -z $S3_PYTHON && -x .venv/bin/python ]] && S3_PYTHON=.venv/bin/python
S3_PYTHON=${S3_PYTHON:-python3}
s3_env=(--env S3_ENDPOINT=)
moto_pid=""
if "$S3_PYTHON" -c 'import moto.server' 2>/dev/null; then
  s3_port=$("$S3_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$S3_PYTHON" -m moto.server -H 127.0.0.1 -p "$s3_port" >"$SMOKE_DIR/moto.log" 2>&1 &
  moto_pid=$!
  for _ in $(seq 100); do
    "$S3_PYTHON" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$s3_port/moto-api/')" 2>/dev/null && break
    sleep 0.2
  done
  s3_env=(--env S3_ENDPOINT="http://127.0.0.1:$s3_port" --env AWS_ACCESS_KEY_ID=testing
          --env AWS_SECRET_ACCESS_KEY=testing --env AWS_DEFAULT_REGION=us-east-1 --env AWS_EC2_METADATA_DISABLED=true)
  echo "== a local S3 server (moto) on 127.0.0.1:$s3_port for the object-storage step"
else
  echo "== no moto[server] in $S3_PYTHON: the object-storage step is skipped (S3_PYTHON=... to run it)"
fi
t0=$(now)
config=$(buildah inspect --type image --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}' "$IMAGE")
user=${config%% *}
[[ -n $user && $user != 0 && $user != root* && $config == *" [tini --]" ]] \
  || die "image config: user and entrypoint are '$config', expected a non-root user and [tini --]"
ctr=$(buildah from --pull=never "$IMAGE")
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; [[ -z $moto_pid ]] || kill "$moto_pid" 2>/dev/null || true' EXIT
buildah run --isolation chroot --env CI=true --env ENGINE="$ENGINE" "${s3_env[@]}" "$ctr" -- bash -c '
set -euo pipefail
echo "== in the image: user $(id -un) (uid $(id -u)), HOME=$HOME, cwd $PWD"
[[ $(id -u) != 0 ]] || { echo "the image runs as root" >&2; exit 1; }
for command in tini avts-synth avts-ingest avts-train ray torchrun ffmpeg; do command -v "$command" >/dev/null; done
tini -s -- avts-train --help >/dev/null  # the ENTRYPOINT with a command
python -c "import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda)"
rm -rf smoke && mkdir smoke && cd smoke
avts-synth --out videos --videos 6 --duration 4 --size 64 --workers 2
avts-ingest --src videos --out shards --workers 2 --shard-size 2 --val-fraction 0.34 --engine "$ENGINE"
ls shards manifests
avts-train --shards shards --out runs/smoke --epochs 1 --batch-size 2 --width 8 --audio-width 8 \
  --crop-size 32 --workers 0 --device cpu --video-time-bins 1 --val-clips 2 --log-every 1
test -s runs/smoke/checkpoints/last.pt
python -c "import torch; s = torch.load(\"runs/smoke/checkpoints/last.pt\", weights_only=False); assert \"model\" in s, sorted(s); print(\"checkpoint ok:\", sorted(s))"
if [[ -n $S3_ENDPOINT ]]; then
  echo "== object storage: ingest to s3://avts-smoke/, train from there ($S3_ENDPOINT)"
  export AWS_ENDPOINT_URL=$S3_ENDPOINT
  python -c "import s3fs; s3fs.S3FileSystem().mkdir(\"avts-smoke\")"
  avts-ingest --src videos --out s3://avts-smoke/shards --manifests s3://avts-smoke/manifests --workers 2 \
    --shard-size 2 --val-fraction 0.34 --engine "$ENGINE"
  python - <<"PY"
import s3fs
from pathlib import Path
fs = s3fs.S3FileSystem()
for name in sorted(path.name for path in Path("shards").glob("*.tar")):
    remote = fs.cat(f"avts-smoke/shards/{name}")
    assert remote == (Path("shards") / name).read_bytes(), f"{name}: the S3 shard differs from the local one"
print("s3 shards equal the local ones:", sorted(fs.ls("avts-smoke/shards", detail=False)))
PY
  avts-train --shards s3://avts-smoke/shards/ --stats s3://avts-smoke/manifests/stats.json --out runs/s3 \
    --epochs 1 --batch-size 2 --width 8 --audio-width 8 --crop-size 32 --workers 0 --device cpu \
    --video-time-bins 1 --val-clips 2 --log-every 1
  test -s runs/s3/checkpoints/last.pt
  echo "object storage ok"
fi
'
buildah rm "$ctr" >/dev/null; trap - EXIT
[[ -z $moto_pid ]] || kill "$moto_pid" 2>/dev/null || true
smoke_s=$(seconds "$t0" "$(now)")

# (d) figures
size=$(buildah images --format '{{.Size}}' "$IMAGE" | head -1)
base_size=$(buildah images --format '{{.Size}}' "$BASE_IMAGE" | head -1)
echo "== smoke test passed"
echo "image $IMAGE: $size (base $BASE_IMAGE: $base_size)"
echo "base image build: ${base_s}$([[ $base_s == reused ]] || echo ' s')"
echo "image build: ${build_s} s"
echo "smoke run (synth -> ingest[$ENGINE] -> train 1 epoch$([[ -z $moto_pid ]] || echo '; again to and from S3')): ${smoke_s} s"
if [[ -n $OCI_ARCHIVE ]]; then
  t0=$(now)
  rm -f "$OCI_ARCHIVE"
  buildah push --quiet "$IMAGE" "oci-archive:$OCI_ARCHIVE:avts:latest"
  echo "OCI archive $OCI_ARCHIVE: $(du -h "$OCI_ARCHIVE" | cut -f1) in $(seconds "$t0" "$(now)") s"
fi
