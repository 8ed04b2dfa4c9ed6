#!/usr/bin/env bash
# Pushes the Helm chart in CHART_DIR to REPOSITORY/<name>:<version> as
# `helm push` lays it out: the chart archive as the one layer, Chart.yaml's
# name and version as the config, with Helm's media types. It needs only
# crane: the chart is written as an OCI image layout, which `crane push`
# sends as it is, and the pushed reference is printed.
#
# Usage: push-chart.sh CHART_DIR REPOSITORY
set -euo pipefail
chart_dir=${1:?usage: push-chart.sh CHART_DIR REPOSITORY}
repo=${2:?usage: push-chart.sh CHART_DIR REPOSITORY}
name=$(sed -n 's/^name: *//p' "$chart_dir/Chart.yaml")
version=$(sed -n 's/^version: *//p' "$chart_dir/Chart.yaml")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/layout/blobs/sha256"

# blob FILE MEDIATYPE stores FILE in the layout and prints its descriptor.
blob() {
	local d
	d=$(sha256sum "$1" | cut -d' ' -f1)
	cp "$1" "$work/layout/blobs/sha256/$d"
	printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$d" "$(stat -c %s "$1")"
}

# A reproducible archive: the same chart gives the same digest.
tar -C "$(dirname "$chart_dir")" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
	-cf - "$(basename "$chart_dir")" | gzip -n >"$work/chart.tgz"
printf '{"apiVersion":"v2","name":"%s","version":"%s"}' "$name" "$version" >"$work/config.json"
config=$(blob "$work/config.json" application/vnd.cncf.helm.config.v1+json)
layer=$(blob "$work/chart.tgz" application/vnd.cncf.helm.chart.content.v1.tar+gzip)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
	"$config" "$layer" >"$work/manifest.json"
manifest=$(blob "$work/manifest.json" application/vnd.oci.image.manifest.v1+json)
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
printf '{"schemaVersion":2,"manifests":[%s]}' "$manifest" >"$work/layout/index.json"
# Helm tags a version's build metadata ("+") as "_".
crane push "$work/layout" "$repo/$name:${version//+/_}"
