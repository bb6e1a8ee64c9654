#!/usr/bin/env bash
# Provides kube-apiserver, etcd and kubectl of the Kubernetes version go.mod
# pins in setup-envtest's store, and prints the directory. A directory that
# already holds all three binaries is reused. Otherwise:
#   1. the fast path: setup-envtest downloads the released binaries (seconds,
#      where the release index and binaries can be reached; a short timeout);
#   2. the fallback: whatever is still missing is built from source through
#      the Go module proxy (about 12 minutes on 2 cores with empty caches).
# Which one ran is said on stderr.
#
# Usage: hack/controlplane/build.sh            # provide if needed, print the dir
#        ENVTEST_STORE=/somewhere build.sh     # another store root
#        CONTROLPLANE_DOWNLOAD=off build.sh    # skip the download
#        ENVTEST_INDEX_URL=... build.sh        # setup-envtest's release index
#        CONTROLPLANE_GO=... build.sh          # the go command of the source build
#                                              # (a test's stand-in, which compiles nothing)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

# The Kubernetes version is the one go.mod pins; etcd follows go.mod as well.
k8s_version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)   # v1.37.2
etcd_version=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
ver=${k8s_version#v}
goos=$(go env GOOS)
goarch=$(go env GOARCH)
store=${ENVTEST_STORE:-${XDG_DATA_HOME:-$HOME/.local/share}/kubebuilder-envtest}
dir="$store/k8s/${ver}-${goos}-${goarch}"

if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" && -x "$dir/kubectl" ]]; then
  echo "$dir"
  exit 0
fi

# The fast path. setup-envtest keeps its binaries in <store>/k8s/<ver>-<os>-<arch>,
# the directory this script fills, so a download lands where a build would.
setup_envtest_version=v0.25.1
download() {
  if [[ "${CONTROLPLANE_DOWNLOAD:-on}" == off ]]; then
    echo "skipped (CONTROLPLANE_DOWNLOAD=off)" >"$store/.download.log"
    return 1
  fi
  local args=(use "$ver" --bin-dir "$store" -p path)
  [[ -n "${ENVTEST_INDEX_URL:-}" ]] && args+=(--index "$ENVTEST_INDEX_URL")
  echo >&2 "controlplane: trying the release binaries (setup-envtest $setup_envtest_version use $ver) ..."
  timeout "${CONTROLPLANE_DOWNLOAD_TIMEOUT:-120}" \
    go run "sigs.k8s.io/controller-runtime/tools/setup-envtest@$setup_envtest_version" "${args[@]}" >"$store/.download.log" 2>&1
}
mkdir -p "$store"
if download; then
  if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" && -x "$dir/kubectl" ]]; then
    echo >&2 "controlplane: downloaded the release binaries into $dir"
    echo "$dir"
    exit 0
  fi
  why="setup-envtest took $dir, which lacks some of them, as installed"
else
  why=$(grep -v '^exit status' "$store/.download.log" 2>/dev/null | tail -n 1 || true)
fi
echo >&2 "controlplane: no release binaries (${why:-none found}); building from source"

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

major=${ver%%.*}
minor=${ver#*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${etcd_version}"

build() { # name package ldflags
  local start=$SECONDS
  echo >&2 "controlplane: building $1 ($2) ..."
  CGO_ENABLED=0 "${CONTROLPLANE_GO:-go}" build -trimpath -ldflags "$3" -o "$tmp/$1" "$2"
  echo >&2 "controlplane: built $1 in $((SECONDS - start))s"
}

[[ -x "$dir/etcd" ]] || { build etcd ./etcd "$etcd_ldflags" && mv "$tmp/etcd" "$dir/etcd"; }
[[ -x "$dir/kube-apiserver" ]] || { build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags" && mv "$tmp/kube-apiserver" "$dir/kube-apiserver"; }
[[ -x "$dir/kubectl" ]] || { build kubectl k8s.io/kubernetes/cmd/kubectl "$ldflags" && mv "$tmp/kubectl" "$dir/kubectl"; }
echo "$dir"
