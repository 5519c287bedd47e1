"""What many tests share: the programs they run, the fast polling policy, where their data lives."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from oqc_style_sdk.polling import PollingPolicy

#: The repository's root, the test data, and the workspace's ``shared/`` folder beside the repo.
ROOT: Final = Path(__file__).resolve().parent.parent
DATA: Final = ROOT / "tests" / "data"
SHARED: Final = ROOT.parent / "shared"

#: A Bell pair in OpenQASM 2 (counts ``{"c": {"00": ~n/2, "11": ~n/2}}``).
BELL: Final = (
    'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'
)
#: The same in OpenQASM 3.
BELL3: Final = (
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; h q[0]; cx q[0], q[1]; c = measure q;'
)

#: Polling fast enough that tests against emulators finish quickly.
FAST: Final = PollingPolicy(min_interval_s=0.01, max_interval_s=0.05)
