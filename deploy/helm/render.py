#!/usr/bin/env python3
"""Lints and renders the Drover chart offline with Helm's own Go SDK.

Helm's CLI is not installable on our machines; the PyPI package
helm-python-sdk ships Helm's official Go SDK (v4) as a shared library and
renders charts without a cluster. This script runs `helm lint --strict` and
`helm template` equivalents, so the manifests can be checked like any other:

    render.py CHART VALUES.yaml OUT_DIR

writes OUT_DIR/<template>.yaml for every rendered template that is not
empty, prints the lint messages, and exits non-zero when lint reports a
warning or an error, or a template fails to render.
"""

import json
import os
import sys

import helm_python  # helm-python-sdk
from helm_python import chart as helm_chart


def main() -> int:
    chart_dir, values_file, out_dir = sys.argv[1:4]
    with open(values_file, encoding="utf-8") as f:
        values = helm_chart.values_from_yaml(f.read())

    report = helm_chart.lint(chart_dir, values, strict=True, namespace="drover")
    problems = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
    for message in report.get("messages") or []:
        print(f"lint: {json.dumps(message)}")
    for error in report.get("errors") or []:
        print(f"lint error: {error}")
    if problems or report.get("errors"):
        return 1

    chart = helm_chart.Chart.load(chart_dir)
    rendered = chart.render(values, name="drover", namespace="drover", is_install=True)
    os.makedirs(out_dir, exist_ok=True)
    written = 0
    for path, text in sorted(rendered.items()):
        if not path.endswith(".yaml") or not text.strip():
            continue
        name = path.replace("/", "_")
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(text)
        written += 1
        print(f"rendered {path}")
    print(f"helm-python-sdk {getattr(helm_python, '__version__', '?')}: {written} manifests")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
