#!/usr/bin/env bash
# Builds the metatrain image from Containerfile with podman and checks it: the binary starts, validates the
# built-in cluster.yaml, and runs a short meta-training (coordinator + 2 workers inside one container) to the end.
#
#   scripts/container.sh [IMAGE]        (default metatrain:VERSION, the release `metatrain --version` names, also
#                                        tagged metatrain:latest; deploy/kubernetes runs metatrain:VERSION)
#
# The base image: BASE=… names one from a registry; by default a Debian bookworm minbase is made here with
# debootstrap (from the Debian mirror, with the runtime libraries) and imported as localhost/metatrain-base:bookworm.
# Needs root (or sudo) for debootstrap and podman; runs podman with runc and explicit ulimits, which is what works on
# this project's machines. Not part of scripts/test.sh (about a minute and 300 MB more).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
swift build -c release --product metatrain >&2
version=$(.build/release/metatrain --version | awk '{print $2}')
image=${1:-metatrain:$version}
missing=()
for p in podman runc debootstrap uidmap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "container: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
podman=(podman --runtime runc)

base=${BASE:-localhost/metatrain-base:bookworm}
if [ -z "${BASE:-}" ] && ! podman image exists "$base"; then
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  echo "container: making $base with debootstrap" >&2
  debootstrap --variant=minbase --include=libzmq5,libprotobuf-c1,libopenblas0-pthread,libstdc++6,python3,python3-venv \
    bookworm "$rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$rootfs" -c . | podman import - "$base" >/dev/null
fi

stage=.build/container
rm -rf "$stage"; mkdir -p "$stage/lib"
cp .build/release/metatrain "$stage/metatrain"
# The Swift runtime is not in Debian: stage the libraries of the toolchain the binary links.
ldd .build/release/metatrain | awk '$3 ~ /\/swift\/linux\// {print $3}' | xargs -r -I{} cp {} "$stage/lib/"
# The environment servers' wheels for the image's Python (bookworm's 3.11): gymnasium, numpy, metatrain_envserver.
mkdir -p "$stage/wheels"
python3 -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$stage/wheels" gymnasium==1.4.0 numpy==2.4.6 >&2
python3 -m pip wheel -q --disable-pip-version-check --no-deps -w "$stage/wheels" ./python >&2
rm -rf python/build python/*.egg-info
"${podman[@]}" build --build-arg BASE="$base" -t "$image" -t metatrain:latest -f Containerfile . >&2

run=("${podman[@]}" run --rm --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 "$image")
"${run[@]}" --version >/dev/null 2>&1 || "${run[@]}" --help >/dev/null
"${run[@]}" config /etc/metatrain/cluster.yaml
out=$("${run[@]}" local --config /etc/metatrain/cluster.yaml --iterations 3 --run-dir /runs/check --no-eval 2>&1) || {
  echo "$out" | tail -20 >&2; echo "container: FAIL: a short run inside $image failed" >&2; exit 1; }
inside=$(echo "$out" | grep -oE 'params_sha256 [0-9a-f]{64}' | tail -1)
# The same run on this machine outside the container: the same bits (same CPU, same kernel choice).
host=$(mktemp -d)
outside=$(.build/release/metatrain local --config cluster.yaml --iterations 3 --run-dir "$host/check" --no-eval 2>&1 \
          | grep -oE 'params_sha256 [0-9a-f]{64}' | tail -1)
rm -rf "$host"
[ -n "$inside" ] && [ "$inside" = "$outside" ] || {
  echo "container: FAIL: inside the image ${inside:-no result}, outside ${outside:-no result}" >&2; exit 1; }
# A gymnasium family through the image's environment servers: the same θ inside and outside too.
gym=(local --config /etc/metatrain/benchmarks/gymnasium-cartpole.yaml --iterations 2 --no-eval)
inside_gym=$("${podman[@]}" run --rm --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 \
  -v "$PWD/benchmarks:/etc/metatrain/benchmarks:ro" "$image" "${gym[@]}" --run-dir /runs/gym 2>&1 | grep -oE 'params_sha256 [0-9a-f]{64}' | tail -1)
host=$(mktemp -d)
METATRAIN_PYTHON=$(scripts/envserver-venv.sh)
outside_gym=$(METATRAIN_PYTHON=$METATRAIN_PYTHON .build/release/metatrain local --config benchmarks/gymnasium-cartpole.yaml --iterations 2 \
  --no-eval --run-dir "$host/gym" 2>&1 | grep -oE 'params_sha256 [0-9a-f]{64}' | tail -1)
rm -rf "$host"
[ -n "$inside_gym" ] && [ "$inside_gym" = "$outside_gym" ] || {
  echo "container: FAIL: gymnasium CartPole inside the image ${inside_gym:-no result}, outside ${outside_gym:-no result}" >&2; exit 1; }
echo "container: $image runs a 3-iteration meta-training to ${inside#params_sha256 } (the same bits as outside it);" \
     "$(podman image inspect "$image" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
