"""The public surface: what `__all__` promises is importable, and nothing public is left out."""

from __future__ import annotations

import importlib

import oqc_style_sdk
from oqc_style_sdk import exceptions


def test_all_names_import() -> None:
    for name in oqc_style_sdk.__all__:
        assert hasattr(oqc_style_sdk, name), name


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name in dir(oqc_style_sdk)
        if not name.startswith("_")
        and not isinstance(getattr(oqc_style_sdk, name), type(importlib))  # submodules
    }
    assert public == set(oqc_style_sdk.__all__) - {"__version__"}


def test_every_error_is_an_sdk_error_and_exported() -> None:
    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, exceptions.SdkError)
        assert getattr(oqc_style_sdk, name) is cls


def test_error_tree_keeps_builtin_families() -> None:
    assert issubclass(exceptions.JobTimeoutError, TimeoutError)
    assert issubclass(exceptions.JobValidationError, ValueError)
    assert issubclass(exceptions.SdkNotStartedError, RuntimeError)
    assert issubclass(exceptions.BackendUnavailableError, ConnectionError)
    assert issubclass(exceptions.JobFileNotFoundError, FileNotFoundError)
    assert issubclass(exceptions.JobCancelledError, exceptions.JobFailed)


def test_seed_import_paths_exist() -> None:
    # The seed page imports these two by module path.
    from oqc_style_sdk.exceptions import JobFailed
    from oqc_style_sdk.job_output import JobResult

    assert JobResult.ok is True
    assert issubclass(JobFailed, Exception)


def test_testing_exports_resolve() -> None:
    from oqc_style_sdk import testing

    for name in testing.__all__:
        assert getattr(testing, name) is not None, name
