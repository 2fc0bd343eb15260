"""Generate the CRDs in ``crds/`` from the pydantic models (``make crds``); the only source of the schemas.

With ``--chart DIR`` the same CRDs are also written as Helm templates under ``DIR/templates/crds/``,
wrapped in ``{{- if .Values.crds.install }}`` and annotated ``helm.sh/resource-policy: keep`` when
``crds.keep`` is set, so ``helm upgrade`` updates them (Helm never upgrades files in a chart's ``crds/``).

pydantic's JSON Schema is turned into a structural OpenAPI v3 schema: ``$ref`` inlined, ``Optional``
unwrapped (absent means unset), titles dropped, ``const`` made an ``enum``, and the model-level
``x-kubernetes-validations`` kept where they were declared.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from .api import ALL_KINDS
from .api.common import CATEGORY, GROUP, VERSION, KindInfo, Model

_DROP = {"title"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(variants) == 1:
            return _resolve({**variants[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "default" and value is None:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key == "properties":
            out[key] = {k: _resolve(v, defs) for k, v in value.items()}
        else:
            out[key] = _resolve(value, defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def schema_for(model: type[Model]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _resolve(raw, raw.get("$defs", {}))
    _normalise(schema)
    return schema


def _normalise(node: dict[str, Any]) -> None:
    """Structural-schema details: every object typed; defaults of objects kept only when non-empty."""
    if "properties" in node:
        node.setdefault("type", "object")
        for child in node["properties"].values():
            _normalise(child)
    if isinstance(node.get("items"), dict):
        _normalise(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        _normalise(node["additionalProperties"])
    if node.get("default") in ({}, []):
        node.pop("default")


def crd_for(info: KindInfo) -> dict[str, Any]:
    spec_schema = schema_for(info.spec_model)
    status_schema = schema_for(info.status_model)
    spec_schema["description"] = f"Desired state of the {info.kind}."
    status_schema["description"] = f"Observed state of the {info.kind}, written by the operator."
    columns = [
        {
            "name": c.name,
            "type": c.type,
            "jsonPath": c.json_path,
            **({"description": c.description} if c.description else {}),
            **({"priority": c.priority} if c.priority else {}),
        }
        for c in info.printer_columns
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": info.crd_name},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": info.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                            **(
                                {"x-kubernetes-validations": [dict(v) for v in info.validations]}
                                if info.validations
                                else {}
                            ),
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated by `make crds` from operator/cleanup_operator/api/. Do not edit.\n"


def render(info: KindInfo) -> str:
    return HEADER + yaml.safe_dump(crd_for(info), sort_keys=False, width=120)


def file_name(info: KindInfo) -> str:
    return f"{GROUP}_{info.plural}.yaml"


CHART_CRDS = Path("templates") / "crds"
CHART_HEADER = (
    "# Generated by `make crds` from operator/cleanup_operator/api/. Do not edit.\n"
    "# Templated so that `helm upgrade` updates the CRDs; see values.yaml `crds`.\n"
)
#: The chart's label helper (charts/cleanup-operator/templates/_helpers.tpl).
CHART_LABELS = "cleanup-operator.labels"
_TEMPLATE_DELIMS = re.compile(r"\{\{|\}\}")


def _escape_template(text: str) -> str:
    """Make ``{{`` and ``}}`` in schema text (descriptions, CEL messages) literal for Go templates."""
    return _TEMPLATE_DELIMS.sub(lambda m: "{{`" + m.group(0) + "`}}", text)


def render_chart(info: KindInfo) -> str:
    """The CRD as a Helm template: installed when ``crds.install``, kept on uninstall when ``crds.keep``."""
    crd = crd_for(info)
    head = yaml.safe_dump({"apiVersion": crd["apiVersion"], "kind": crd["kind"]}, sort_keys=False)
    metadata = (
        "metadata:\n"
        f"  name: {crd['metadata']['name']}\n"
        "  labels:\n"
        f'    {{{{- include "{CHART_LABELS}" . | nindent 4 }}}}\n'
        "  {{- if .Values.crds.keep }}\n"
        "  annotations:\n"
        "    helm.sh/resource-policy: keep\n"
        "  {{- end }}\n"
    )
    body = yaml.safe_dump({"spec": crd["spec"]}, sort_keys=False, width=120)
    return (
        "{{- if .Values.crds.install }}\n"
        + CHART_HEADER
        + _escape_template(head)
        + metadata
        + _escape_template(body)
        + "{{- end }}\n"
    )


def outputs(out: Path, chart: Path | None = None) -> dict[Path, str]:
    """Every generated file and its content: ``out/<file>`` and, with a chart, its CRD templates."""
    files = {out / file_name(info): render(info) for info in ALL_KINDS}
    if chart is not None:
        files.update({chart / CHART_CRDS / file_name(info): render_chart(info) for info in ALL_KINDS})
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="crds", help="directory to write the CRDs into")
    parser.add_argument(
        "--chart", type=Path, help="Helm chart directory: also write its templates/crds/ from the models"
    )
    parser.add_argument("--check", action="store_true", help="fail if the files differ from the models")
    args = parser.parse_args(argv)
    if args.chart is not None and not (args.chart / "Chart.yaml").is_file():
        parser.error(f"--chart {args.chart}: no Chart.yaml there")
    stale = []
    for path, text in outputs(Path(args.out), args.chart).items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run `make crds`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
