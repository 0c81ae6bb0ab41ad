# Tools of the manifest tests (tests/tests/deploy.rs), sourced by tests/run-all.sh.
#
# `kubectl kustomize` (kubectl is on the machine image; Debian's
# kubernetes-client is the fallback). The manifests need kustomize v5 (kubectl >= 1.27).
# Helm's engine: helm.sh.

if ! command -v kubectl >/dev/null 2>&1; then
  need_packages kubernetes-client
fi
kubectl kustomize "$root/deploy/kustomize/base" >/dev/null \
  || fail "kubectl kustomize cannot render deploy/kustomize/base; the manifests need kustomize v5 (kubectl >= 1.27), found: $(kubectl version --client 2>&1 | tr '\n' ' ')"
