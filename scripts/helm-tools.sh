#!/usr/bin/env bash
# The tools the Helm chart's test needs (tests/integration/test_60_helm.py),
# made where they are missing, into one cache directory:
#   helm         go install helm.sh/helm/v3/cmd/helm@HELM_VERSION
#   kubeconform  go install github.com/yannh/kubeconform/cmd/kubeconform@KUBECONFORM_VERSION
#   schemas      the Kubernetes JSON schemas (standalone, strict) that the PyPI package
#                kubernetes-validate ships, so kubeconform needs no download at run time
# Prints one line per tool with the time its build took (0 s: it was there).
# PB_TOOLS sets the directory (default ~/.cache/pushbridge-tools); the last line
# printed is that directory.
set -euo pipefail

HELM_VERSION=v3.21.4
KUBECONFORM_VERSION=v0.7.0
KUBERNETES_VALIDATE_VERSION=1.37.0

TOOLS=${PB_TOOLS:-$HOME/.cache/pushbridge-tools}
mkdir -p "$TOOLS/bin"
export GOBIN=$TOOLS/bin
export PATH=$PATH:/usr/local/go/bin

build() { # name module
    local name=$1 module=$2 t0=$SECONDS
    if [ ! -x "$TOOLS/bin/$name" ]; then
        command -v go >/dev/null || { echo "helm-tools: go is not installed" >&2; exit 1; }
        go install "$module" >&2
    fi
    echo "$name: $((SECONDS - t0)) s"
}

build helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
build kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"

schemas=$TOOLS/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION
t0=$SECONDS
if [ ! -d "$schemas/kubernetes_validate" ]; then
    rm -rf "$schemas.tmp"
    # --target touches no installed package; Debian's pip still wants the flag.
    pip=(python3 -m pip install --quiet --disable-pip-version-check --no-deps
         --target "$schemas.tmp" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
    "${pip[@]}" >&2 2>/dev/null || "${pip[@]}" --break-system-packages >&2
    mv "$schemas.tmp" "$schemas"
fi
echo "schemas: $((SECONDS - t0)) s"
echo "$TOOLS"
