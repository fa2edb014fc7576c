#!/usr/bin/env bash
# Regenerates the committed protobuf-c code in Sources/MetaTrainProto from proto/metatrain.proto.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
out=Sources/MetaTrainProto
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
protoc-c --proto_path=proto --c_out="$tmp" proto/metatrain.proto
mkdir -p "$out/include"
# SwiftPM wants public headers under include/; the .c file includes its header by the bare name.
cp "$tmp/metatrain.pb-c.h" "$out/include/metatrain.pb-c.h"
cp "$tmp/metatrain.pb-c.c" "$out/metatrain.pb-c.c"
