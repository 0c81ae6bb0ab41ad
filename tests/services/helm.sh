# Helm's engine for the chart tests (tests/tests/deploy.rs), sourced by tests/run-all.sh.
#
# No helm binary exists here; PyPI's helm-python-sdk bundles Helm v4's Go SDK and renders
# and lints the chart offline. It goes into a virtualenv under target/ (kept between
# runs); CARETAKER_HELM_PYTHON tells the tests which python has it.

HELM_SDK_VERSION=0.2.2
helm_venv="$root/target/tools/helm-venv"
if ! "$helm_venv/bin/python" -c "import helm_python" >/dev/null 2>&1; then
  python3 -m venv --help >/dev/null 2>&1 || need_packages python3 python3-venv
  rm -rf "$helm_venv"
  python3 -m venv "$helm_venv" || need_packages python3-venv
  [ -x "$helm_venv/bin/pip" ] || python3 -m venv "$helm_venv" || fail "cannot create a virtualenv in $helm_venv"
  "$helm_venv/bin/pip" install -q --disable-pip-version-check "helm-python-sdk==$HELM_SDK_VERSION" >&2 \
    || fail "cannot install helm-python-sdk==$HELM_SDK_VERSION from PyPI"
fi
"$helm_venv/bin/python" -c "import helm_python" || fail "helm-python-sdk does not import from $helm_venv"
export CARETAKER_HELM_PYTHON="$helm_venv/bin/python"
