"""Every ```python block of README.md and docs/*.md runs.

A block runs as it is written, with top-level ``await`` allowed, in a fresh namespace holding the
names the docs use without defining them (``BELL``, ``GHZ3``, ``COIN``, ``Sdk`` ...), in a temporary
directory. An HTML comment on the line before a block says what else it needs:

- ``<!-- run: emulator=VENDOR -->``: the vendor's emulator is started, its environment lines are set
  (``OQC_URL`` ...), and ``emu``, ``URL``, ``HOST`` and ``TOKEN`` name it;
- ``<!-- run: local-sdk -->``: ``sdk`` is an open local ``Sdk``; ``<!-- run: local-job -->``: and ``job``
  a Bell job that has completed;
- ``<!-- not-run: REASON -->``: an illustrative fragment, not run (the reason is required).

A block without top-level ``await`` (e.g. one that calls ``anyio.run``) runs in a worker thread.
"""

from __future__ import annotations

import ast
import inspect
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from tests.common import BELL, ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!--\s*(run|not-run):\s*(.*?)\s*-->")

GHZ3 = (
    'OPENQASM 2.0; include "qelib1.inc"; qreg q[3]; creg c[3]; h q[0]; cx q[0],q[1]; cx q[1],q[2];'
    " measure q -> c;"
)
COIN = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; h q[0]; measure q -> c;'


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    code: str
    kind: str  # "run" or "not-run"
    option: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for m in FENCE.finditer(text):
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = MARKER.search(before)
            kind, option = (marker.group(1), marker.group(2)) if marker else ("run", "")
            found.append(Block(page, text[: m.start()].count("\n") + 1, m.group(1), kind, option))
    return found


BLOCKS = _blocks()
#: The blocks that run. A ``not-run`` block (an illustration needing a real account) is no test at all
#: rather than a skipped one; the test below keeps such blocks few and each with its reason.
RUNNABLE = [b for b in BLOCKS if b.kind != "not-run"]


def test_the_docs_have_examples_and_few_are_skipped() -> None:
    assert len(BLOCKS) >= 15
    skipped = [b for b in BLOCKS if b.kind == "not-run"]
    assert all(b.option for b in skipped), "a not-run marker needs a reason"
    assert len(skipped) <= len(BLOCKS) // 5, [b.id for b in skipped]


def _namespace() -> dict[str, Any]:
    import oqc_style_sdk
    from oqc_style_sdk.testing import start_emulator

    ns: dict[str, Any] = {"__name__": "__doc_example__", "anyio": anyio, "Path": Path, "Any": Any}
    ns.update({name: getattr(oqc_style_sdk, name) for name in oqc_style_sdk.__all__})
    ns.update(BELL=BELL, GHZ3=GHZ3, COIN=COIN, start_emulator=start_emulator)
    return ns


async def _exec(code: str, ns: dict[str, Any]) -> None:
    compiled = compile(code, "<doc example>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if compiled.co_flags & inspect.CO_COROUTINE:
        await eval(compiled, ns)
    else:
        await anyio.to_thread.run_sync(exec, compiled, ns)


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
async def test_doc_example_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    logger = logging.getLogger("oqc_style_sdk")  # an example may configure it: restored after
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "level", logger.level)
    ns = _namespace()
    with anyio.fail_after(90):
        if block.option.startswith("emulator="):
            from oqc_style_sdk.testing import start_emulator

            async with start_emulator(block.option.split("=", 1)[1], job_duration_s=0.2) as emu:
                for key, value in emu.env.items():
                    monkeypatch.setenv(key, value)
                token = getattr(emu, "token", None)
                ns.update(emu=emu, URL=emu.base_url, HOST=emu.base_url, TOKEN=token)
                await _exec(block.code, ns)
        elif block.option in ("local-sdk", "local-job"):
            from oqc_style_sdk import Sdk

            async with Sdk(seed=7) as sdk:
                ns["sdk"] = sdk
                if block.option == "local-job":
                    ns["job"] = sdk.create_job(program=BELL)
                    await ns["job"].execute(timeout_s=30)
                await _exec(block.code, ns)
        else:
            assert block.option == "", f"unknown marker option {block.option!r}"
            await _exec(block.code, ns)
