"""Settings of the ``oqcs`` command: a TOML config file, the environment, and the command line.

The config file is ``--config FILE``, else ``$OQCS_CONFIG``, else ``$XDG_CONFIG_HOME/oqcs/config.toml``
(``~/.config/oqcs/config.toml``); a missing default file is no error. It names the default backend
and each backend's settings — the keywords of ``Sdk(name, ...)``:

```toml
backend = "oqc"                      # used when neither --backend nor $OQCS_BACKEND is given

[backends.oqc]
url = "https://cloud.oqc.app"
authentication_token = "..."         # keep the file owner-only (chmod 600)
default_target = "qpu:uk:2:d865b5a184"

[backends.databricks]
host = "https://adb-1234.5.azuredatabricks.net"
```

Which backend: ``--backend``, else ``$OQCS_BACKEND``, else the file's ``backend``, else ``local``. A
setting in the file is passed to the backend as it is; a setting left out is read from the environment
as each backend documents (``OQC_URL``, ``DATABRICKS_TOKEN`` ...).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exceptions import ConfigurationError, JobValidationError

__all__ = ["CliConfig", "default_config_path", "load_config", "read_program"]


def default_config_path() -> Path:
    """``$OQCS_CONFIG``, else ``$XDG_CONFIG_HOME/oqcs/config.toml``, else ``~/.config/oqcs/config.toml``."""
    explicit = os.environ.get("OQCS_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "oqcs" / "config.toml"


@dataclass(frozen=True)
class CliConfig:
    """What the config file says (empty when there is none)."""

    path: Path | None = None
    backend: str | None = None
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resolve_backend(self, flag: str | None) -> str:
        """``--backend``, else ``$OQCS_BACKEND``, else the file's ``backend``, else ``local``."""
        return flag or os.environ.get("OQCS_BACKEND") or self.backend or "local"

    def settings(self, backend: str) -> dict[str, Any]:
        """The file's settings for ``backend`` (keywords of ``Sdk(backend, ...)``)."""
        return dict(self.backends.get(backend, {}))


def load_config(path: Path | None = None) -> CliConfig:
    """Read the config file; ``path=None`` reads the default one if it exists.

    A file given explicitly (``--config``, ``$OQCS_CONFIG``) must exist. Raises
    :class:`ConfigurationError` for a file that cannot be read or is not valid.
    """
    explicit = path is not None or bool(os.environ.get("OQCS_CONFIG"))
    path = path if path is not None else default_config_path()
    if not path.exists() and not explicit:
        return CliConfig()
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = set(doc) - {"backend", "backends"}
    if unknown:
        raise ConfigurationError(f"config file {path}: unknown keys {', '.join(sorted(unknown))}")
    backend = doc.get("backend")
    if backend is not None and not isinstance(backend, str):
        raise ConfigurationError(f"config file {path}: 'backend' must be a string")
    backends = doc.get("backends", {})
    if not isinstance(backends, dict) or not all(isinstance(v, dict) for v in backends.values()):
        raise ConfigurationError(f"config file {path}: [backends.NAME] must be tables of settings")
    return CliConfig(path, backend, backends)


def read_program(path: Path) -> Any:
    """A program file as the backends take it.

    OpenQASM (``.qasm`` or any text) is passed as text. A ``.json`` file, or a file whose text starts
    with ``{``, is parsed: the Databricks run spec (``{"tasks": [...]}`` or ``{"job_id": ...}``) and
    the Windmill script (``{"path": ..., "args": {...}}`` or ``{"code": ..., "language": ...}``) are JSON.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise JobValidationError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise JobValidationError(f"{path} is not valid JSON: {exc}") from exc
    return text
