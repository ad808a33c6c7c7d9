"""The committed schemas, AsyncAPI document and catalogue are what the models generate."""

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from agora_contract import CONTRACT_VERSION, EVENT_TYPES, asyncapi_document
from agora_contract.export import Layout, generated, main, problems

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def checkout(tmp_path: Path) -> Layout:
    """Copy the artefacts and their inputs into a scratch checkout."""
    real = Layout.of(ROOT)
    contract = tmp_path / "shared" / "contract"
    shutil.copytree(real.package_dir, contract / "src" / "agora_contract")
    shutil.copytree(real.snippet_file.parent, contract / "snippets")
    shutil.copy(ROOT / "shared" / "contract" / "pyproject.toml", contract / "pyproject.toml")
    (tmp_path / "docs").mkdir()
    shutil.copy(real.docs_file, tmp_path / "docs" / "events.md")
    return Layout.of(tmp_path)


def test_committed_artefacts_are_not_stale() -> None:
    assert problems(Layout.of(ROOT)) == []


def test_generated_artefacts_cover_every_type_the_envelope_asyncapi_and_docs() -> None:
    layout = Layout.of(ROOT)
    names = {path.relative_to(ROOT).as_posix() for path in generated(layout)}
    schemas = "shared/contract/src/agora_contract/schemas"
    expected = {f"{schemas}/{event_type}.json" for event_type in EVENT_TYPES}
    expected |= {f"{schemas}/envelope.json", "shared/contract/src/agora_contract/asyncapi.json"}
    assert names == expected | {"docs/events.md"}


def test_check_names_every_stale_missing_and_unexpected_file(
    checkout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = checkout.package_dir / "schemas" / "agora.users.user.deleted.v1.json"
    schema.write_text(schema.read_text("utf-8").replace("user's id", "user id"), "utf-8")
    (checkout.package_dir / "asyncapi.json").unlink()
    (checkout.package_dir / "schemas" / "agora.users.user.vanished.v1.json").write_text("{}")
    (checkout.package_dir / "examples" / "agora.items.item.created.v1.json").unlink()
    assert main(["--check", "--root", str(checkout.root)]) == 1
    report = capsys.readouterr().err
    src = "shared/contract/src/agora_contract"
    assert f"{src}/schemas/agora.users.user.deleted.v1.json: stale" in report
    assert f"{src}/asyncapi.json: missing" in report
    assert f"{src}/schemas/agora.users.user.vanished.v1.json: not generated any more" in report
    assert f"{src}/examples/agora.items.item.created.v1.json: missing" in report
    assert "docs/events.md" not in report  # the catalogue shows the seed of a missing example


def test_export_rewrites_what_is_stale_and_then_check_passes(
    checkout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    (checkout.docs_file).write_text("# outdated\n", "utf-8")
    (checkout.package_dir / "schemas" / "agora.users.user.vanished.v1.json").write_text("{}")
    (checkout.package_dir / "examples" / "agora.items.item.created.v1.json").unlink()
    assert main(["--root", str(checkout.root)]) == 0
    written = capsys.readouterr().out
    assert "wrote docs/events.md" in written
    assert "agora.items.item.created.v1.json" in written
    assert not (checkout.package_dir / "schemas" / "agora.users.user.vanished.v1.json").exists()
    assert main(["--check", "--root", str(checkout.root)]) == 0
    assert problems(checkout) == []


def test_export_never_overwrites_a_committed_example(checkout: Layout) -> None:
    path = checkout.package_dir / "examples" / "agora.users.user.registered.v1.json"
    document = json.loads(path.read_text("utf-8"))
    document["data"]["name"] = "Ada Lovelace"
    text = json.dumps(document, indent=2) + "\n"
    path.write_text(text, "utf-8")
    assert main(["--root", str(checkout.root)]) == 0
    assert path.read_text("utf-8") == text
    assert "Ada Lovelace" in checkout.docs_file.read_text("utf-8")


def test_check_fails_on_an_example_the_contract_rejects(
    checkout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    path = checkout.package_dir / "examples" / "agora.items.item.deleted.v1.json"
    document = json.loads(path.read_text("utf-8"))
    document["data"]["reason"] = "bored"
    path.write_text(json.dumps(document), "utf-8")
    (checkout.package_dir / "examples" / "not-json.json").write_text("{", "utf-8")
    assert main(["--root", str(checkout.root)]) == 1
    assert main(["--check", "--root", str(checkout.root)]) == 1
    report = capsys.readouterr().err
    assert "agora.items.item.deleted.v1.json: invalid data for" in report
    assert "not-json.json: not valid JSON" in report


def test_layout_refuses_a_folder_that_is_no_checkout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(FileNotFoundError, match="not an Agora source checkout"):
        Layout.of(tmp_path)
    assert main(["--check", "--root", str(tmp_path)]) == 2
    assert "not an Agora source checkout" in capsys.readouterr().err


def test_served_document_is_the_committed_file() -> None:
    committed = json.loads((Layout.of(ROOT).package_dir / "asyncapi.json").read_text("utf-8"))
    assert asyncapi_document() == committed
    served = asyncapi_document()
    served["info"]["title"] = "changed by a caller"
    assert asyncapi_document()["info"]["title"] == "Agora events"


def test_contract_version_is_the_package_version() -> None:
    pyproject = tomllib.loads((ROOT / "shared" / "contract" / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == CONTRACT_VERSION
    assert pyproject["project"]["dependencies"] == ["pydantic>=2.11,<3"]
    assert asyncapi_document()["info"]["version"] == CONTRACT_VERSION
    assert f"Contract version **{CONTRACT_VERSION}**" in Layout.of(ROOT).docs_file.read_text()
