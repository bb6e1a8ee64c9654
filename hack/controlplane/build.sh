#!/usr/bin/env bash
# Builds kube-apiserver, etcd and kubectl from source (through the Go module
# proxy) into setup-envtest's store, and prints the directory. A directory that
# already holds all three binaries of this version is reused: nothing is rebuilt.
#
# Usage: hack/controlplane/build.sh            # build if needed, print the dir
#        ENVTEST_STORE=/somewhere build.sh     # another store root
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
  CGO_ENABLED=0 go build -trimpath -ldflags "$3" -o "$tmp/$1" "$2"
  echo >&2 "controlplane: built $1 in $((SECONDS - start))s"
}

[[ -x "$dir/etcd" ]] || { build etcd ./etcd "$etcd_ldflags" && mv "$tmp/etcd" "$dir/etcd"; }
[[ -x "$dir/kube-apiserver" ]] || { build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags" && mv "$tmp/kube-apiserver" "$dir/kube-apiserver"; }
[[ -x "$dir/kubectl" ]] || { build kubectl k8s.io/kubernetes/cmd/kubectl "$ldflags" && mv "$tmp/kubectl" "$dir/kubectl"; }
echo "$dir"
