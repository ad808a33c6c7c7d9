"""Write, or check, the committed artefacts: JSON Schemas, examples, AsyncAPI, docs/events.md.

`python -m agora_contract.export` writes them; `--check` writes nothing and exits 1 naming
every stale file. Examples are written only when missing and never overwritten: they are the
fixtures that keep v1 compatible, so a model change that rejects one must become a new type.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agora_contract.artefacts import (
    ASYNCAPI_FILE,
    ENVELOPE_SCHEMA,
    EXAMPLES_DIR,
    SCHEMAS_DIR,
    json_name,
    render_json,
)
from agora_contract.asyncapi import build_asyncapi
from agora_contract.catalogue import render_catalogue
from agora_contract.compat import example_problems
from agora_contract.registry import EVENT_TYPES
from agora_contract.samples import sample_envelopes
from agora_contract.schemas import data_schema, envelope_schema


@dataclass(frozen=True)
class Layout:
    """Where the artefacts live in a source checkout."""

    root: Path
    package_dir: Path
    docs_file: Path
    snippet_file: Path

    @classmethod
    def of(cls, root: Path | None = None) -> "Layout":
        """Return the layout of the checkout at `root` (default: the one holding this file)."""
        if root is None:
            root = Path(__file__).resolve().parents[4]
        contract = root / "shared" / "contract"
        if not (contract / "pyproject.toml").is_file():
            raise FileNotFoundError(f"{root} is not an Agora source checkout (no {contract})")
        return cls(
            root=root,
            package_dir=contract / "src" / "agora_contract",
            docs_file=root / "docs" / "events.md",
            snippet_file=contract / "snippets" / "subscriber.py",
        )

    def show(self, path: Path) -> str:
        """Return a path relative to the checkout, for messages."""
        return str(path.relative_to(self.root))


def read_examples(layout: Layout) -> dict[Path, Any]:
    """Return every committed example file with its parsed JSON (None if it does not parse)."""
    examples: dict[Path, Any] = {}
    for path in sorted((layout.package_dir / EXAMPLES_DIR).glob("*.json")):
        try:
            examples[path] = json.loads(path.read_text("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            examples[path] = None
    return examples


def missing_examples(layout: Layout) -> dict[Path, str]:
    """Return a seed example for every event type that has no committed example yet."""
    folder = layout.package_dir / EXAMPLES_DIR
    return {
        folder / json_name(event_type): render_json(envelope.to_dict())
        for event_type, envelope in sample_envelopes().items()
        if not (folder / json_name(event_type)).exists()
    }


def generated(layout: Layout) -> dict[Path, str]:
    """Return every generated artefact (all but the examples) with its expected content."""
    committed = {path.stem: doc for path, doc in read_examples(layout).items()}
    seeds = {path.stem: json.loads(text) for path, text in missing_examples(layout).items()}
    examples = {**seeds, **committed}
    schemas = layout.package_dir / SCHEMAS_DIR
    files = {schemas / json_name(ENVELOPE_SCHEMA): render_json(envelope_schema())}
    for event_type, model in EVENT_TYPES.items():
        files[schemas / json_name(event_type)] = render_json(data_schema(model))
    files[layout.package_dir / ASYNCAPI_FILE] = render_json(build_asyncapi(examples))
    snippet = layout.snippet_file.read_text("utf-8")
    files[layout.docs_file] = render_catalogue(examples, snippet)
    return files


def problems(layout: Layout) -> list[str]:
    """Return one line per stale, missing, unexpected or rejected artefact."""
    found = []
    for path, text in generated(layout).items():
        if not path.is_file():
            found.append(f"{layout.show(path)}: missing")
        elif path.read_text("utf-8") != text:
            found.append(f"{layout.show(path)}: stale")
    expected = set(generated(layout))
    for path in sorted((layout.package_dir / SCHEMAS_DIR).glob("*.json")):
        if path not in expected:
            found.append(f"{layout.show(path)}: not generated any more")
    for path in missing_examples(layout):
        found.append(f"{layout.show(path)}: missing")
    for path, document in read_examples(layout).items():
        reasons = ["not valid JSON"] if document is None else example_problems(path.stem, document)
        found += [f"{layout.show(path)}: {reason}" for reason in reasons]
    return found


def write(layout: Layout) -> list[Path]:
    """Write missing examples and every changed artefact; return the paths written or removed."""
    changed = []
    for path, text in missing_examples(layout).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        changed.append(path)
    files = generated(layout)
    for path, text in files.items():
        if not path.is_file() or path.read_text("utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, "utf-8")
            changed.append(path)
    for path in sorted((layout.package_dir / SCHEMAS_DIR).glob("*.json")):
        if path not in files:
            path.unlink()
            changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter; return the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m agora_contract.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--root", type=Path, help="the checkout (default: this file's)")
    args = parser.parse_args(argv)
    try:
        layout = Layout.of(args.root)
    except FileNotFoundError as exc:
        print(f"{exc}; pass --root CHECKOUT", file=sys.stderr)  # noqa: T201
        return 2
    if args.check:
        found = problems(layout)
        for line in found:
            print(line, file=sys.stderr)  # noqa: T201 - a command-line tool's report
        if found:
            print("run: uv run python -m agora_contract.export", file=sys.stderr)  # noqa: T201
        return 1 if found else 0
    for path in write(layout):
        print(f"wrote {layout.show(path)}")  # noqa: T201
    rejected = [line for line in problems(layout) if "stale" not in line]
    for line in rejected:
        print(line, file=sys.stderr)  # noqa: T201
    return 1 if rejected else 0


if __name__ == "__main__":
    sys.exit(main())
