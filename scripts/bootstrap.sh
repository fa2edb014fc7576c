#!/usr/bin/env bash
# Installs the Debian packages metatrain builds against, only those that are missing.
# Idempotent and quiet when everything is present; every other script calls it first.
set -euo pipefail

# ZeroMQ, protobuf-c runtime + protoc-c, OpenBLAS (cblas_sgemm), pkg-config for the systemLibrary targets;
# protoc (protobuf-compiler) and python3-venv for the wire interoperability test; iproute2 and nftables for
# the multi-host tests in network namespaces (scripts/netns-cluster.sh).
packages=(libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libopenblas-dev pkg-config protobuf-compiler python3-venv iproute2 nftables)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "bootstrap: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "bootstrap: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
