"""``save()`` takes any file name the file system takes, and stays atomic.

Issue 16, hole 7: the temporary file beside the target was named after it (``.{name}.XXXXXXXX.tmp``,
14 bytes longer), so a valid name of 243 to 255 bytes could not be saved to.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oqc_style_sdk import Sdk, persistence
from oqc_style_sdk.exceptions import PersistenceError
from tests.common import BELL
from tests.core.test_persistence import listing


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return 255


@pytest.mark.parametrize("short_by", [0, 1, 12])
async def test_a_name_of_up_to_name_max_bytes_saves_and_loads(tmp_path: Path, short_by: int) -> None:
    suffix = ".job.json"
    name = "j" * (_name_max(tmp_path) - short_by - len(suffix)) + suffix
    assert len(name.encode()) == _name_max(tmp_path) - short_by
    async with Sdk() as sdk:
        job = sdk.create_job(program=BELL, tag="long")
        path = await job.save(tmp_path / name)
        assert path.name == name
        loaded = await sdk.load(path)
        assert (loaded.id, loaded.program, loaded.tag) == (job.id, BELL, "long")
    assert listing(tmp_path) == [name]  # no temporary file left


async def test_a_long_name_of_multibyte_characters_saves(tmp_path: Path) -> None:
    name = "é" * ((_name_max(tmp_path) - 5) // 2) + ".json"  # counted in bytes, not characters
    async with Sdk() as sdk:
        path = await sdk.create_job(program=BELL).save(tmp_path / name)
        assert (await sdk.load(path)).program == BELL


async def test_a_save_over_a_long_name_that_fails_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "k" * (_name_max(tmp_path) - 5) + ".json"
    async with Sdk() as sdk:
        job = sdk.create_job(program=BELL, tag="first")
        path = await job.save(tmp_path / name)
        before = path.read_bytes()
        job.reconfigure(tag="second")

        def no_rename(src: object, dst: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", no_rename)
        with pytest.raises(PersistenceError, match="No space left"):
            await job.save(path)
        monkeypatch.undo()
        assert path.read_bytes() == before  # the old file, whole
        assert listing(tmp_path) == [name]  # the temporary file removed
        await job.save(path)
        assert (await sdk.load(path)).tag == "second"


def test_the_temporary_name_is_short_whatever_the_target() -> None:
    # mkstemp adds 8 random characters between prefix and suffix.
    assert len((persistence._TMP_PREFIX + "x" * 8 + persistence._TMP_SUFFIX).encode()) <= 32
