"""The gateway's per-service lines, generated from the services' declarations.

``deploy/gateway/dynamic.yml`` is one Go template for docker-compose and the embedded stack.
Which services exist, and the paths each one answers, come from the ``[tool.agora.service]``
tables (:mod:`agora_deploy.services`): this module writes them into the template's generated
block, and a test fails when the block is stale. ``python -m agora_deploy.gateway_config``
rewrites it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from agora_deploy.launchers.gateway import DYNAMIC_CONFIG
from agora_deploy.services import REGISTRY, ServiceSpec

BEGIN = "{{- /* generated: begin (python -m agora_deploy.gateway_config) */}}"
END = "{{- /* generated: end */}}"


def _quoted(text: str) -> str:
    """A Go template string literal (the rules hold backticks, never double quotes)."""
    if '"' in text or "\\" in text:
        raise ValueError(f"a gateway rule cannot hold a double quote or a backslash: {text}")
    return f'"{text}"'


def generated_block(specs: Sequence[ServiceSpec] = REGISTRY) -> str:
    """The template lines that name the services and their public paths."""
    names = " ".join(_quoted(spec.name) for spec in specs)
    rules = " ".join(f"{_quoted(spec.name)} {_quoted(spec.gateway_rule)}" for spec in specs)
    return "\n".join(
        [BEGIN, f"{{{{- $services := list {names} }}}}", f"{{{{- $rules := dict {rules} }}}}", END]
    )


def render(text: str, specs: Sequence[ServiceSpec] = REGISTRY) -> str:
    """``text`` (the template) with its generated block replaced."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + generated_block(specs) + text[end:]


def main(argv: Sequence[str] = ()) -> int:
    """Rewrite the block (``--check``: only say whether it is current)."""
    path = Path(DYNAMIC_CONFIG)
    text = path.read_text()
    fresh = render(text)
    if fresh == text:
        sys.stdout.write(f"{path}: up to date\n")
        return 0
    if "--check" in argv:
        sys.stderr.write(f"{path}: stale; run python -m agora_deploy.gateway_config\n")
        return 1
    path.write_text(fresh)
    sys.stdout.write(f"{path}: rewritten from the services' declarations\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
