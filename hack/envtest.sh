#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver + etcd) — and, on request, kubelet,
# kube-controller-manager and kube-scheduler — from the Go module proxy, because prebuilt
# envtest archives cannot be downloaded on our machines.
#
#   hack/envtest.sh                      # kube-apiserver and etcd
#   hack/envtest.sh kubelet kube-scheduler kube-controller-manager
#
# The versions are those hack/tools/k8s/go.mod and hack/tools/etcd/go.mod pin: the one place
# each is written. Binaries land in bin/k8s/<os>-<arch>/ with the real version stamped in
# --version; a binary whose --version already matches is not rebuilt. Prints the directory
# (the value for KUBEBUILDER_ASSETS) as its last line.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# pinned MODULE GO_MOD: the version GO_MOD requires of MODULE, without its leading v.
pinned() { awk -v m="$1" '($1 == "require" && $2 == m) || $1 == m { sub(/^v/, "", $NF); print $NF; exit }' "$2"; }
K8S_VERSION="$(pinned k8s.io/kubernetes "${root}/hack/tools/k8s/go.mod")"
ETCD_VERSION="$(pinned go.etcd.io/etcd/server/v3 "${root}/hack/tools/etcd/go.mod")"
goos="$(go env GOOS)"; goarch="$(go env GOARCH)"
dest="${root}/bin/k8s/${goos}-${goarch}"
mkdir -p "${dest}"

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(kube-apiserver etcd)

log() { printf 'envtest: %s\n' "$*" >&2; }

# version_of BIN: what the binary says its version is (kubeadm and kubectl have no --version).
version_of() {
	case "$(basename "$1")" in
	kubeadm) "$1" version -o short ;;
	kubectl) "$1" version --client ;;
	*) "$1" --version ;;
	esac 2>/dev/null
}

# has_version BIN WANT: the binary exists and its version mentions WANT. (Not a pipe into
# grep -q: with pipefail, a binary that writes on after the match dies of SIGPIPE and the
# check fails at random.)
has_version() { [ -x "$1" ] && [[ "$(version_of "$1")" == *"$2"* ]]; }

# build_k8s CMD...: builds the Kubernetes commands that are missing or at another version,
# all in one go build (their packages are compiled once, and links run side by side).
build_k8s() {
	local missing=() cmd
	for cmd in "$@"; do
		if has_version "${dest}/${cmd}" "v${K8S_VERSION}"; then log "${cmd} v${K8S_VERSION} present"; else missing+=("${cmd}"); fi
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	local major="${K8S_VERSION%%.*}" minor; minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
	local ldflags=""
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X ${pkg}.gitVersion=v${K8S_VERSION} -X ${pkg}.gitMajor=${major}"
		ldflags+=" -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean"
		ldflags+=" -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
	done
	log "building ${missing[*]} v${K8S_VERSION} from the Go module proxy (several minutes on a cold cache)"
	local start=$SECONDS tmp
	tmp="$(mktemp -d "${dest}/.build.XXXXXX")"
	(cd "${root}/hack/tools/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w ${ldflags}" \
		-o "${tmp}/" "${missing[@]/#/k8s.io/kubernetes/cmd/}")
	for cmd in "${missing[@]}"; do mv "${tmp}/${cmd}" "${dest}/${cmd}"; done
	rmdir "${tmp}"
	log "built ${missing[*]} in $((SECONDS - start))s"
}

build_etcd() {
	local out="${dest}/etcd"
	if has_version "${out}" "etcd Version: ${ETCD_VERSION}"; then log "etcd ${ETCD_VERSION} present"; return; fi
	log "building etcd v${ETCD_VERSION} from the Go module proxy"
	local start=$SECONDS
	(cd "${root}/hack/tools/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
		-o "${out}.tmp" go.etcd.io/etcd/server/v3)
	mv "${out}.tmp" "${out}"
	log "built etcd in $((SECONDS - start))s"
}

k8s=()
for c in "${components[@]}"; do
	case "${c}" in
	etcd) build_etcd ;;
	kube-apiserver | kubelet | kube-controller-manager | kube-scheduler | kube-proxy | kubeadm | kubectl) k8s+=("${c}") ;;
	*) log "unknown component ${c}"; exit 2 ;;
	esac
done
[ ${#k8s[@]} -eq 0 ] || build_k8s "${k8s[@]}"
echo "${dest}"
