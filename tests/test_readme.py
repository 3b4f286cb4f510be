"""Every code block of README.md and docs/*.md runs as written, or says why it does not.

A fenced ``python`` or ``bash`` block is run in a fresh folder holding a copy of the
repository's ``data/`` and an empty ``models/`` (what a fresh clone has after the first
README command, minus the demo's outputs), with this venv's ``detector`` on PATH. The
HTML comment on the line before a block controls it:

- ``<!-- not-run: REASON -->``: the block is illustrative (a cluster, the set-up itself);
  the reason must be given.
- ``<!-- run-with: OLD => NEW, ...; WHY -->``: run with those literal substitutions (small
  row counts), stated in the document itself so a reader sees them.

Blocks of one file run in order in the same folder, so a later block may use an earlier
block's outputs. Any other fenced block (an untagged one too) must be marked not-run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"python", "bash"}

_FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_MARK = re.compile(r"<!--\s*(not-run|run-with):(.*?)-->\s*$", re.S)


@dataclass
class Block:
    doc: Path
    line: int
    lang: str
    code: str
    mark: str | None  # "not-run", "run-with" or None
    arg: str

    @property
    def name(self) -> str:
        return f"{self.doc.name}:{self.line}:{self.lang or 'untagged'}"

    def runnable_code(self) -> str:
        code = self.code
        if self.mark == "run-with":
            subs, _, _why = self.arg.partition(";")
            for pair in subs.split(","):
                old, sep, new = pair.partition("=>")
                assert sep, f"{self.name}: run-with wants 'OLD => NEW', got {pair!r}"
                old, new = old.strip(), new.strip()
                assert old in code, f"{self.name}: run-with {old!r} is not in the block"
                code = code.replace(old, new)
        return code


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        out.append(Block(doc, text.count("\n", 0, m.start()) + 1, m.group(1).lower(),
                         m.group(2), mark.group(1) if mark else None,
                         mark.group(2).strip() if mark else ""))
    return out


ALL = [b for d in DOCS for b in blocks(d)]


def test_the_documents_have_blocks():
    names = {b.doc.name for b in ALL}
    assert "README.md" in names and "dask.md" in names
    assert sum(b.lang == "python" and b.mark != "not-run" for b in ALL) >= 1
    assert sum(b.lang == "bash" and b.mark != "not-run" for b in ALL) >= 2


@pytest.mark.parametrize("block", ALL, ids=[b.name for b in ALL])
def test_every_block_is_run_or_marked_with_a_reason(block):
    if block.mark == "not-run":
        assert len(block.arg) >= 10, f"{block.name}: not-run needs a reason"
    else:
        assert block.lang in RUNNABLE, (
            f"{block.name}: a {block.lang or 'untagged'} block is never run; mark it "
            "<!-- not-run: reason -->")
        block.runnable_code()  # substitutions must apply


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("DETECTOR_MODEL_KEY", None)
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_blocks_run_as_written(doc, tmp_path):
    work = tmp_path / "clone"
    work.mkdir()
    shutil.copytree(ROOT / "data", work / "data")
    (work / "models").mkdir()
    ran = 0
    for b in blocks(doc):
        if b.mark == "not-run" or b.lang not in RUNNABLE:
            continue
        code = b.runnable_code()
        script = tmp_path / f"block_{b.line}.{'py' if b.lang == 'python' else 'sh'}"
        script.write_text(code, encoding="utf-8")
        cmd = ([sys.executable, str(script)] if b.lang == "python"
               else ["bash", "-euo", "pipefail", str(script)])
        proc = subprocess.run(cmd, cwd=work, env=_env(), capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, (f"{b.name} failed (exit {proc.returncode}):\n{code}\n"
                                      f"stdout: {proc.stdout[-2000:]}\n"
                                      f"stderr: {proc.stderr[-3000:]}")
        ran += 1
    if doc.name == "README.md":
        assert ran >= 3
        assert (work / "try" / "report.html").stat().st_size > 10_000
        assert (work / "models" / "sample.joblib").exists()
        assert (work / "outcomes.joblib").exists()
