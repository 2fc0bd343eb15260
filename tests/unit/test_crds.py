"""The checked-in CRDs are exactly what the models generate, and carry what users rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cleanup_operator import crdgen
from cleanup_operator.api import ALL_KINDS

CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_checked_in_crd_matches_models(info):
    path = CRDS / crdgen.file_name(info)
    assert path.exists(), f"{path} missing: run `make crds`"
    assert path.read_text() == crdgen.render(info), f"{path} is out of date: run `make crds`"


def test_check_mode_reports_drift(tmp_path, capsys):
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    target = tmp_path / crdgen.file_name(ALL_KINDS[0])
    target.write_text(target.read_text().replace("cleanup", "cleanups", 1))
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    assert crdgen.file_name(ALL_KINDS[0]) in capsys.readouterr().err


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_crd_is_structural_and_complete(info):
    crd = yaml.safe_load(crdgen.render(info))
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["categories"] == ["cleanup"]
    assert crd["spec"]["names"]["shortNames"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]][-1] == "Age"
    schema = version["schema"]["openAPIV3Schema"]

    def walk(node, path):
        assert "$ref" not in node and "anyOf" not in node, path
        if "properties" in node:
            assert node.get("type") == "object", path
            for name, child in node["properties"].items():
                if path.startswith("spec"):
                    assert child.get("description"), f"{path}.{name} has no description"
                walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + "[]")

    walk(schema["properties"]["spec"], "spec")
    walk(schema["properties"]["status"], "status")
    status = schema["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions"} <= set(status)
