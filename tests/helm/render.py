"""Renders and lints the Helm chart with Helm's own engine (helm-python-sdk bundles
Helm v4's Go SDK), for tests/tests/deploy.rs. No cluster is contacted.

Usage: python render.py CHART_DIR RELEASE NAMESPACE VALUES_JSON
Prints {"manifests": {template path: text}, "lint": {...}} as JSON on stdout.
"""
import json
import sys

import helm_python


def main() -> int:
    chart_dir, release, namespace, values_json = sys.argv[1:5]
    values = json.loads(values_json)
    manifests = helm_python.Chart.load(chart_dir).render(values, name=release, namespace=namespace)
    lint = helm_python.lint(chart_dir, values, strict=True, namespace=namespace)
    json.dump({"manifests": manifests, "lint": lint}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
