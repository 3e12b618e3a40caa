"""The README's examples run as written, top to bottom, on a fresh machine (issue 23).

Every ```bash and ```python block of README.md is run in document order, in one bash
session (``set -euo pipefail``), in a folder that looks like a clone of this repository
and with a fresh, empty home folder; a Python block runs as a file with
``.venv/bin/python``. A block preceded by ``<!-- readme-test: skip, REASON -->`` is left
out (the README says why next to it): the test suite's own command and the PostgreSQL
server's installation. The team store's block runs against the suite's throwaway server:
its example URL is replaced by the server's.

- ``test_readme_examples_run_in_order`` (fast): the clone's ``.venv`` is this test run's
  environment, so the install line (``python3 -m venv …``) is left out; everything else runs.
- ``test_readme_from_a_fresh_clone`` (slow): a copy of the project's files, the install line
  included: a new virtual environment, ``pip install -e '.[report]'``, then every block.

``claude`` (Claude Code's command) is stood in for by a script that checks what the README
asks it to register: an existing ``healthsim`` program with the argument ``mcp``.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from healthsim.state.entities import KNOWN_TYPES, id_fields
from helpers.paths import HERE

ROOT = HERE.parent
README = ROOT / "README.md"
# The team store's example URL in the README, replaced by the throwaway server's.
TEAM_URL = "postgresql://alice@localhost:5432/healthsim"
BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<marker>[^\n]*?) -->\n)?^```(?P<lang>[a-z]*)\n(?P<code>.*?)^```", re.S | re.M
)
INSTALL_LINE = re.compile(r"^python3 -m venv \.venv\b.*$", re.M)

FAKE_CLAUDE = textwrap.dedent(
    """\
    #!{python}
    # Stands in for Claude Code's `claude`: records `claude mcp add …` after checking that it
    # registers an existing, executable healthsim program with the argument `mcp`.
    import json, os, sys
    args = sys.argv[1:]
    assert args[:2] == ["mcp", "add"], args
    command = args[args.index("--") + 1 :]
    assert len(command) == 2 and command[1] == "mcp", command
    assert os.path.isabs(command[0]) and os.access(command[0], os.X_OK), command
    options = args[2 : args.index("--")]
    env = [options[i + 1] for i, o in enumerate(options) if o in ("--env", "-e")]
    with open(os.environ["FAKE_CLAUDE_LOG"], "a") as log:
        log.write(json.dumps({{"name": options[-1], "command": command, "env": env}}) + "\\n")
    """
)


@dataclass
class Block:
    lang: str
    code: str
    line: int
    skip: str | None


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    found = []
    for m in BLOCK.finditer(text):
        marker = m.group("marker")
        skip = marker.split(",", 1)[1].strip() if marker and marker.startswith("skip") else None
        line = text.count("\n", 0, m.start("code"))
        found.append(Block(m.group("lang"), m.group("code"), line, skip))
    return found


def session_script(folder: Path, *, install: bool, team_url: str) -> str:
    """The README's runnable blocks as one bash script (Python blocks as files in ``folder``)."""
    lines = ["set -euo pipefail"]
    for i, block in enumerate(readme_blocks()):
        if block.lang not in ("bash", "python") or block.skip:
            continue
        lines.append(f"echo '### README.md line {block.line}' >&2")
        if block.lang == "python":
            path = folder / f"readme-block-{i}.py"
            path.write_text(block.code, encoding="utf-8")
            lines.append(f".venv/bin/python {path}")
        else:
            code = block.code.replace(TEAM_URL, team_url)
            lines.append(code if install else INSTALL_LINE.sub("", code))
    return "\n".join(lines) + "\n"


def run_readme(clone: Path, home: Path, team_url: str, *, install: bool, timeout: int) -> tuple[str, list[dict]]:
    """Run the README in ``clone`` with ``home`` as HOME; returns stdout and what `claude` registered."""
    tools = clone.parent / "tools"
    tools.mkdir()
    claude = tools / "claude"
    claude.write_text(FAKE_CLAUDE.format(python=sys.executable), encoding="utf-8")
    claude.chmod(0o755)
    log = clone.parent / "claude.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HEALTHSIM_", "PG", "VIRTUAL_ENV", "COLUMNS")) and k != "PYTHONPATH"
    }
    env.update(HOME=str(home), FAKE_CLAUDE_LOG=str(log), PATH=f"{tools}{os.pathsep}{env.get('PATH', '')}")
    # pip's download cache stays the user's (the new HOME has none): the install line is the same,
    # only wheels already fetched by this machine's own install are not fetched again.
    env.setdefault("PIP_CACHE_DIR", str(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "pip"))
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # A fresh machine writes Python's bytecode caches: a process compiles the modules it imports
    # once, the next ones reuse them. With PYTHONDONTWRITEBYTECODE (this machine sets it) each of
    # the ~60 programs the README runs compiled the project's modules again (~0.13 s of CPU each).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # So pip need not byte-compile all ~3,200 modules it unpacks (pyarrow, plotly's graph objects…), most of
    # which the README never imports: those it does are compiled on first import, as above. (PIP_COMPILE=0
    # is --no-compile; pip reads PIP_NO_COMPILE=1 the other way round.)
    env["PIP_COMPILE"] = "0"
    script = clone.parent / "readme.sh"
    script.write_text(session_script(clone.parent, install=install, team_url=team_url), encoding="utf-8")
    done = subprocess.run(
        ["bash", str(script)],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    where = [line for line in done.stderr.splitlines() if line.startswith("### ")]
    assert done.returncode == 0, f"failed after {where[-1:]}:\n{done.stderr[-4000:]}"
    registered = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done.stdout, registered


def check_outcome(home: Path, stdout: str, registered: list[dict]) -> None:
    """What the README's examples leave behind is what they say."""
    assert "saved   diabetes-cohort" in stdout  # the quickstart
    assert (home / "Downloads" / "cohort-report.html").is_file()
    assert (home / "Downloads" / "cohort-parquet" / "patients.parquet").is_file()
    assert (home / "share" / "cohort.json").is_file() and (home / "patients.csv").is_file()
    assert (home / "outbox" / "diabetes-cohort.json").is_file()
    assert (home / "trip.duckdb").is_file() and (home / "trial.duckdb").is_file()
    [claude] = registered
    assert claude["name"] == "healthsim" and claude["env"] == [f"HEALTHSIM_DB={home}/.healthsim/healthsim.duckdb"]


@pytest.mark.slow
def test_readme_examples_run_in_order(tmp_path: Path, pg_url: str) -> None:
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("examples", "scripts", "src", "pyproject.toml"):
        (clone / name).symlink_to(ROOT / name)
    (clone / ".venv").symlink_to(Path(sys.prefix))  # the environment running this test
    home = tmp_path / "readme-home"
    home.mkdir()
    stdout, registered = run_readme(clone, home, pg_url, install=False, timeout=600)
    check_outcome(home, stdout, registered)


@pytest.mark.slow
def test_readme_from_a_fresh_clone(tmp_path: Path, pg_url: str) -> None:
    """The install line too: a new virtual environment, `pip install -e '.[report]'`."""
    clone = tmp_path / "clone"
    ignore = shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", ".git", "artifacts", ".*_cache")
    clone.mkdir()
    for name in ("src", "examples", "scripts"):
        shutil.copytree(ROOT / name, clone / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, clone / name)
    home = tmp_path / "readme-home"
    home.mkdir()
    stdout, registered = run_readme(clone, home, pg_url, install=True, timeout=900)
    check_outcome(home, stdout, registered)
    assert (clone / ".venv" / "bin" / "healthsim").is_file()


def test_every_runnable_block_is_run_and_skips_say_why() -> None:
    blocks = readme_blocks()
    shell = [b for b in blocks if b.lang in ("bash", "python")]
    skipped = [b for b in shell if b.skip]
    assert len(skipped) == 4 and all(len(b.skip or "") > 20 for b in skipped)
    assert any(TEAM_URL in b.code for b in shell if not b.skip)  # the team block runs (on the test server)
    assert any(INSTALL_LINE.search(b.code) for b in shell if not b.skip)
    # No placeholder a reader would have to fill in.
    for b in shell:
        if not b.skip:
            assert not re.search(
                r"db\.example\.org|/data/|batch-2\.json(?!\")", b.code.replace("examples/batch-2.json", "")
            ), b.code


def test_the_own_id_table_is_the_library_s() -> None:
    """The README's table of own-id fields per entity type is what entities.id_fields uses."""
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_]+)` \| (.+?) \|$", text, flags=re.M)
    table = {t: re.findall(r"`([a-z_]+)`", fields) for t, fields in rows if t in KNOWN_TYPES}
    assert set(table) == set(KNOWN_TYPES)
    for entity_type, fields in table.items():
        assert [*fields, "id", "_entity_id"] == list(id_fields(entity_type)), entity_type
