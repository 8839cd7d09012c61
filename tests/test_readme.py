"""README commands are real: every `sama ...` line of its Commands block answers --help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sama.cli import COMMANDS, main

README = (Path(__file__).parents[1] / "README.md").read_text()


def _commands() -> list[list[str]]:
    block = README.split("## Commands", 1)[1].split("```")[1]
    out = []
    for line in block.strip().splitlines():
        words = re.split(r"\s{2,}", line.strip())[0].split()
        out.append([w for w in words[1:] if w.islower() and w.replace("-", "").isalpha()][:2])
    return out


def test_readme_starts_with_the_two_commands():
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert "make demo" in first_block and "make test" in first_block
    assert "make test" in (Path(__file__).parents[1] / ".ci" / "run").read_text()


@pytest.mark.parametrize("words", _commands(), ids=lambda w: " ".join(w))
def test_readme_command_has_help(words, capsys):
    assert words[0] in COMMANDS
    argv = words if words[0] in ("models", "media") else words[:1]
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()
