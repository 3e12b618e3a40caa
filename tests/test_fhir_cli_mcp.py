"""Issue 23 from the command line and over MCP (the official client, in process)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from mcp import Client
from typer.testing import CliRunner

from healthsim.cli import app
from healthsim.mcp_server import build_server
from healthsim.state import ScenarioStore

SYNTHEA = Path(__file__).parent / "fixtures" / "synthea"
SYNTHEA_CSV = Path(__file__).parent.parent / "examples" / "synthea-csv"
runner = CliRunner()


def cli(*args: str) -> Any:
    result = runner.invoke(app, list(args), catch_exceptions=False, prog_name="healthsim")
    return result


def test_cli_synthea_to_fhir_and_back(db_path: Path, tmp_path: Path) -> None:
    result = cli("import", str(SYNTHEA_CSV), "--format", "synthea-csv", "--name", "syn", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    result = cli("export", "syn", "--format", "fhir", "-o", str(tmp_path / "syn-fhir"), "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {
        "path": str(tmp_path / "syn-fhir"),
        "format": "fhir",
        "skipped_count": 0,
        "skipped": [],
    }
    assert "warning" not in result.stderr  # (nothing was left out)
    result = cli("export", "syn", "--format", "fhir-bundle", "--strict", "--validate", "-o", str(tmp_path / "b"))
    assert result.exit_code == 0, result.stdout + result.stderr
    result = cli("import", str(tmp_path / "syn-fhir"), "--format", "fhir", "--name", "again")
    assert result.exit_code == 0, result.stdout + result.stderr
    store = ScenarioStore(db_path)
    first, again = (store.load_scenario(n)["entities"] for n in ("syn", "again"))
    assert {t: len(v) for t, v in first.items()} == {t: len(v) for t, v in again.items()}


def test_cli_export_warns_of_what_it_left_out(db_path: Path, tmp_path: Path) -> None:
    """A FHIR export that skips entities says so on stderr (how many, why, where the report
    names each, what refuses instead); before, the terminal showed only the folder, as for a
    whole export (issue 23: never silently dropped)."""
    entities = {
        "patients": [{"mrn": "M1", "gender": "F"}, {"name": "no member id"}],
        "medications": [{"patient_mrn": "M1"}, {"patient_mrn": "M1"}, {"patient_mrn": "M1", "name": "aspirin"}],
        "lab_results": [{"patient_mrn": "M1", "value": 5}],
        "immunizations": [{"patient_mrn": "M1", "vaccine_code": "08"}],
        "members": [{"name": "no id"}],
    }
    ScenarioStore(db_path).save_scenario("gaps", entities)
    for fmt in ("fhir", "fhir-bundle"):
        folder = tmp_path / fmt
        result = cli("export", "gaps", "--format", fmt, "-o", str(folder))
        assert result.exit_code == 0, result.stdout + result.stderr
        assert result.stdout.strip() == str(folder)
        warning = " ".join(result.stderr.split())  # (Rich folds long lines)
        report = json.loads((folder / "export-report.json").read_text())
        assert report["skipped_count"] == 5, report
        assert warning.startswith("warning: 5 entities could not become valid FHIR resources"), warning
        assert "no medication name or code (2)" in warning
        assert "; …" in warning  # (four reasons: the three most frequent are named)
        assert str(folder / "export-report.json") in warning and "--strict" in warning
        result = cli("export", "gaps", "--format", fmt, "-o", str(folder), "--json")
        answer = json.loads(result.stdout)
        assert answer["skipped_count"] == 5 and len(answer["skipped"]) == 3, answer
        assert answer["skipped"][0] == {**report["skipped"][0], "examples": report["skipped"][0]["examples"][:3]}
    result = cli("export", "gaps", "--format", "ndjson", "-o", str(tmp_path / "g.ndjson"))
    assert result.exit_code == 0 and result.stderr == ""


def test_cli_import_error_names_the_file_and_exits_1(db_path: Path, tmp_path: Path) -> None:
    (tmp_path / "x.ndjson").write_text('{"resourceType": "Nope"}\n')
    result = cli("import", str(tmp_path / "x.ndjson"), "--format", "fhir")
    assert result.exit_code == 1
    assert "x.ndjson" in result.stderr and "line 1" in result.stderr and "'Nope'" in result.stderr


def test_mcp_export_and_import_take_the_formats(db_path: Path, isolated_home: Path) -> None:
    downloads = isolated_home / "Downloads"
    downloads.mkdir(exist_ok=True)
    shutil.copytree(SYNTHEA_CSV, downloads / "synthea-csv")

    async def main() -> None:
        async with Client(build_server(db_path), mode="legacy", cache=None) as client:
            session = client.session
            result = await session.call_tool(
                "import_scenario", {"file_path": "synthea-csv", "name": "syn", "format": "synthea-csv"}
            )
            assert not result.is_error, result.content[0].text
            assert json.loads(result.content[0].text)["entities_by_type"]["patients"] == 3
            result = await session.call_tool("export_scenario", {"name": "syn", "format": "fhir"})
            assert not result.is_error, result.content[0].text
            path = Path(json.loads(result.content[0].text)["path"])
            assert path == downloads / "syn-fhir" and (path / "Patient.ndjson").is_file()
            result = await session.call_tool("export_scenario", {"name": "syn", "format": "fhir"})  # replaces it
            assert not result.is_error, result.content[0].text
            result = await session.call_tool(
                "import_scenario", {"file_path": "syn-fhir", "name": "back", "format": "fhir"}
            )
            assert not result.is_error, result.content[0].text
            assert json.loads(result.content[0].text)["entities_by_type"]["patients"] == 3
            result = await session.call_tool("export_scenario", {"name": "syn", "format": "fhir-bundle"})
            assert not result.is_error, result.content[0].text

    asyncio.run(asyncio.wait_for(main(), 120))


def test_mcp_export_names_what_it_skipped(db_path: Path, isolated_home: Path) -> None:
    """The fhir and fhir-bundle answers carry the export report's skipped count and the
    first reasons, as ``export-report.json`` does (issue 23: never silently dropped)."""
    (isolated_home / "Downloads").mkdir(exist_ok=True)
    entities = {
        "patients": [{"mrn": "M1", "gender": "F"}],
        "medications": [{"patient_mrn": "M1", "status": "active"}, {"patient_mrn": "M1", "name": "aspirin"}],
    }
    ScenarioStore(db_path).save_scenario("gaps", entities)

    async def main() -> None:
        async with Client(build_server(db_path), mode="legacy", cache=None) as client:
            for fmt in ("fhir", "fhir-bundle"):
                result = await client.session.call_tool("export_scenario", {"name": "gaps", "format": fmt})
                assert not result.is_error, result.content[0].text
                answer = json.loads(result.content[0].text)
                assert answer["skipped_count"] == 1, answer
                assert answer["skipped"] == [
                    {
                        "reason": "no medication name or code",
                        "count": 1,
                        "examples": [answer["skipped"][0]["examples"][0]],
                    }
                ]
                assert answer["skipped"][0]["examples"][0]["type"] == "medications"
            result = await client.session.call_tool("export_scenario", {"name": "gaps", "format": "ndjson"})
            assert "skipped_count" not in json.loads(result.content[0].text)

    asyncio.run(asyncio.wait_for(main(), 120))
