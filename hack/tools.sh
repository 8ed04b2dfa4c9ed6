#!/usr/bin/env bash
# Builds the pinned tools the tests run (DESIGN.md, "Real parts in tests")
# from the Go module proxy, using the wrapper modules in tools/.
#
# Usage: hack/tools.sh NAME...   NAME is k8s, opa, cosign, registry, crane, crds, chromium or all.
#
# chromium is the one tool not built from Go: Debian's package, installed
# with apt-get when no browser is on PATH (see build_chromium).
#
# Layout (bin/ is git-ignored):
#   bin/k8s-<k8s version>-etcd-<etcd version>/{kube-apiserver,kubectl,etcd}
#   bin/k8s -> that directory (controller-runtime envtest BinaryAssetsDirectory)
#   bin/<name>-<version>/<name> and bin/<name> -> that binary
#   bin/crds-<project>-<version>-...-controller-gen-<version>/*.yaml and bin/crds -> that directory
#   bin/controller-gen-<version>/controller-gen (generates the CRDs no module ships)
#
# The version comes from the wrapper module's go.mod, so bumping a pin there
# builds into a new directory and the old one stays valid until removed. A
# binary that already exists is not rebuilt. Each binary is written to a
# temporary name and renamed, so an interrupted build never leaves a partial
# binary that would later be mistaken for a cached one.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/tools"
BIN="$ROOT/bin"

# Static binaries: they run on any Linux host and in distroless images.
export CGO_ENABLED=0

# Temporary outputs of builds still running; removed if the script dies.
TMPFILES=()
cleanup() {
	local f
	for f in "${TMPFILES[@]+"${TMPFILES[@]}"}"; do
		rm -f -- "$f"
	done
}
trap cleanup EXIT
# Turn signals into a normal exit so that the EXIT trap runs.
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf 'tools: %s\n' "$*" >&2; }

# modversion DIR MODULE prints MODULE's version (without the leading v) as
# selected by the wrapper module in tools/DIR.
modversion() {
	local v
	v=$(go -C "$TOOLS/$1" list -m -f '{{.Version}}' "$2")
	printf '%s\n' "${v#v}"
}

# build DIR PKG OUT [LDFLAGS] builds PKG within the wrapper module tools/DIR
# into OUT, unless OUT exists already.
build() {
	local dir=$1 pkg=$2 out=$3 ldflags=${4:-}
	if [[ -x "$out" ]]; then
		log "up to date: ${out#"$ROOT"/}"
		return 0
	fi
	mkdir -p "$(dirname "$out")"
	local tmp="$out.tmp.$$"
	TMPFILES+=("$tmp")
	log "building ${out#"$ROOT"/} from $pkg"
	local start=$SECONDS
	go -C "$TOOLS/$dir" build -trimpath -ldflags "-s -w $ldflags" -o "$tmp" "$pkg"
	mv -f -- "$tmp" "$out"
	log "built ${out#"$ROOT"/} in $((SECONDS - start))s"
}

# link TARGET NAME points bin/NAME at TARGET (relative to bin/, so that the
# checkout can move). The new link is renamed over the old one, so a test
# starting meanwhile sees either version, never no link.
link() {
	local tmp="$BIN/.$2.tmp.$$"
	TMPFILES+=("$tmp")
	ln -sfn -- "$1" "$tmp"
	mv -fT -- "$tmp" "$BIN/$2"
}

build_k8s() {
	local kv ev dir
	kv=$(modversion kubernetes k8s.io/kubernetes)
	ev=$(modversion etcd go.etcd.io/etcd/server/v3)
	dir="k8s-$kv-etcd-$ev"
	# Without these the binaries report v0.0.0-master, which kubectl flags
	# as version skew against the API server.
	local minor=${kv#*.}
	minor=${minor%%.*}
	local vflags="" p
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		vflags+=" -X $p.gitVersion=v$kv -X $p.gitMajor=${kv%%.*} -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
	done
	build kubernetes k8s.io/kubernetes/cmd/kube-apiserver "$BIN/$dir/kube-apiserver" "$vflags"
	build kubernetes k8s.io/kubernetes/cmd/kubectl "$BIN/$dir/kubectl" "$vflags"
	# The etcd main package is the server module root, which go build would
	# name "server".
	build etcd go.etcd.io/etcd/server/v3 "$BIN/$dir/etcd"
	link "$dir" k8s
}

build_opa() {
	local v
	v=$(modversion opa github.com/open-policy-agent/opa)
	build opa github.com/open-policy-agent/opa "$BIN/opa-$v/opa"
	link "opa-$v/opa" opa
}

build_cosign() {
	local v
	v=$(modversion cosign github.com/sigstore/cosign/v2)
	build cosign github.com/sigstore/cosign/v2/cmd/cosign "$BIN/cosign-$v/cosign" \
		"-X sigs.k8s.io/release-utils/version.gitVersion=v$v -X sigs.k8s.io/release-utils/version.gitTreeState=clean"
	link "cosign-$v/cosign" cosign
}

build_registry() {
	local v
	v=$(modversion registry github.com/distribution/distribution/v3)
	build registry github.com/distribution/distribution/v3/cmd/registry "$BIN/registry-$v/registry" \
		"-X github.com/distribution/distribution/v3/version.version=v$v"
	link "registry-$v/registry" registry
}

build_crane() {
	local v
	v=$(modversion crane github.com/google/go-containerregistry)
	build crane github.com/google/go-containerregistry/cmd/crane "$BIN/crane-$v/crane" \
		"-X github.com/google/go-containerregistry/cmd/crane/cmd.Version=v$v"
	link "crane-$v/crane" crane
}

# The CRDs of the GitOps controllers whose objects admission checks (Flux's
# OCIRepository, HelmRepository and HelmChart, Argo CD's Application),
# taken as their projects ship them in their Go modules, never written by
# hand. Each line names the project, pins module@version and the module's
# go.sum hash, and names the file.
CRDS=(
	"flux github.com/fluxcd/source-controller@v1.7.0 h1:/fBgS4CSmT5Jj/fjQDF92y+pC3gst1GJjgNSzY8Ff9I= config/crd/bases/source.toolkit.fluxcd.io_ocirepositories.yaml"
	"flux github.com/fluxcd/source-controller@v1.7.0 h1:/fBgS4CSmT5Jj/fjQDF92y+pC3gst1GJjgNSzY8Ff9I= config/crd/bases/source.toolkit.fluxcd.io_helmrepositories.yaml"
	"flux github.com/fluxcd/source-controller@v1.7.0 h1:/fBgS4CSmT5Jj/fjQDF92y+pC3gst1GJjgNSzY8Ff9I= config/crd/bases/source.toolkit.fluxcd.io_helmcharts.yaml"
	"argocd github.com/argoproj/argo-cd/v3@v3.1.0 h1:2+gPskQKCyPC9DzRSWQ1AvmS3WiIlRR7bKz/FO3DozI= manifests/crds/application-crd.yaml"
)

# Flux's HelmRelease CRD (helm.toolkit.fluxcd.io) ships in no module the
# proxy serves: helm-controller's root module, where upstream commits
# config/crd/bases, is not served, and flux2 only names a release URL on
# GitHub. So it is generated from the real API types, the module
# github.com/fluxcd/helm-controller/api, with upstream's generator at the
# version upstream's Makefile pins for that release (CONTROLLER_GEN_VERSION
# v0.21.0 for api v1.6.x; v1.7.x needs a newer Go than ours). Both are
# pinned, with their go.sum hashes, by the wrapper module tools/crdgen, and
# controller-gen runs with the options of upstream's `make manifests`. The
# result was checked to equal byte for byte the file upstream committed for
# api/v1.6.3. Each line names the project, the API module and the file.
GENCRDS=(
	"helm github.com/fluxcd/helm-controller/api helm.toolkit.fluxcd.io_helmreleases.yaml"
)

build_crds() {
	local line project mod sum file dir="" info got pkg cg cgv
	local -A seen=()
	for line in "${CRDS[@]}"; do
		read -r project mod sum file <<<"$line"
		if [[ -z "${seen[$project-${mod#*@}]:-}" ]]; then
			seen[$project-${mod#*@}]=1
			dir+="${dir:+-}$project-${mod#*@}"
		fi
	done
	cgv=$(modversion crdgen sigs.k8s.io/controller-tools)
	for line in "${GENCRDS[@]}"; do
		read -r project pkg file <<<"$line"
		dir+="-$project-v$(modversion crdgen "$pkg")"
	done
	dir="crds-$dir-controller-gen-v$cgv"
	if [[ -d "$BIN/$dir" ]]; then
		log "up to date: bin/$dir"
		link "$dir" crds
		return 0
	fi
	cg="$BIN/controller-gen-$cgv/controller-gen"
	build crdgen sigs.k8s.io/controller-tools/cmd/controller-gen "$cg"
	local tmp="$BIN/.$dir.tmp.$$"
	TMPFILES+=("$tmp")
	rm -rf -- "$tmp"
	mkdir -p "$tmp"
	for line in "${CRDS[@]}"; do
		read -r project mod sum file <<<"$line"
		# Outside any module, so that the download needs no go.mod here.
		info=$(cd / && go mod download -json "$mod")
		got=$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p' <<<"$info")
		if [[ "$got" != "$sum" ]]; then
			log "$mod: go.sum hash $got, pinned $sum"
			exit 1
		fi
		cp -- "$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")/$file" "$tmp/"
	done
	for line in "${GENCRDS[@]}"; do
		read -r project pkg file <<<"$line"
		local out="$tmp/gen-$project"
		mkdir -p "$out"
		log "generating $file from $pkg with controller-gen v$cgv"
		# In tools/crdgen, whose go.mod pins the API module: the packages
		# load from the module cache, checked against its go.sum.
		(cd "$TOOLS/crdgen" && "$cg" crd:crdVersions=v1 paths="$pkg/..." output:crd:artifacts:config="$out")
		if [[ ! -s "$out/$file" ]]; then
			log "controller-gen wrote no $file from $pkg"
			exit 1
		fi
		mv -- "$out/$file" "$tmp/"
		rm -rf -- "$out"
	done
	chmod -R u+w "$tmp"
	mv -T -- "$tmp" "$BIN/$dir"
	log "fetched bin/$dir"
	link "$dir" crds
}

# The web view's tests drive a real headless Chromium (DESIGN.md, "Real
# parts in tests"). It cannot be built from the module proxy, so it comes
# from the distribution: Debian's chromium package, with one font so that
# pages render text (screenshots). internal/testutil/browser finds it on
# PATH under these names, or at $STAGEGATE_CHROMIUM.
build_chromium() {
	local n
	if [[ -n "${STAGEGATE_CHROMIUM:-}" ]]; then
		log "chromium: using STAGEGATE_CHROMIUM=$STAGEGATE_CHROMIUM"
		return 0
	fi
	for n in chromium chromium-browser; do
		if command -v "$n" >/dev/null 2>&1; then
			log "up to date: $(command -v "$n")"
			return 0
		fi
	done
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "chromium: no chromium or chromium-browser on PATH; install Debian's chromium package" \
			"(apt-get install chromium fonts-dejavu-core) or set STAGEGATE_CHROMIUM to a Chromium binary;" \
			"the web view's browser tests skip without it, and fail under CI=true"
		return 0
	fi
	log "installing chromium with apt-get"
	local start=$SECONDS
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-dejavu-core
	log "installed chromium in $((SECONDS - start))s"
}

usage() {
	echo "usage: $0 NAME...  (NAME: k8s opa cosign registry crane crds chromium all)" >&2
	exit 2
}

main() {
	[[ $# -gt 0 ]] || usage
	local names=() n
	for n in "$@"; do
		case $n in
		all) names+=(k8s opa cosign registry crane crds chromium) ;;
		k8s | opa | cosign | registry | crane | crds | chromium) names+=("$n") ;;
		*) usage ;;
		esac
	done
	mkdir -p "$BIN"
	local start=$SECONDS
	for n in "${names[@]}"; do
		"build_$n"
	done
	log "done in $((SECONDS - start))s"
}

# exit on the same line: bash reads scripts as it runs them, and an edit
# to this file during a long build must not run leftover text.
main "$@"; exit
