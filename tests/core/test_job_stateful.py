"""A hypothesis state machine of ``Job`` against ``ScriptedBackend``: random interleavings of
execute, submit, cancel, cancel_if_active, refresh, reconfigure, save and load (the job carries on
as the loaded copy), with DESIGN.md's invariants checked after every step:

* one submission per run (the backend never sees more runs than the job has had);
* one history entry per ended run, none for the current active run;
* no way out of a terminal state but a new run (execute/submit/reconfigure start one);
* save then load gives the same state, run, history length and vendor id.

The Sdk lives in an event loop behind a blocking portal, so the machine's rules stay synchronous.
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from oqc_style_sdk import Job, JobState, Sdk
from oqc_style_sdk.exceptions import JobStateError, JobTimeoutError
from oqc_style_sdk.polling import PollingPolicy
from oqc_style_sdk.testing import ScriptedBackend

S = JobState
SCRIPTS = (
    ["QUEUED", "RUNNING", "COMPLETED"],
    ["QUEUED", "FAILED"],
    ["RUNNING", "RUNNING", "RUNNING", "COMPLETED"],
    ["COMPLETED", "RUNNING"],  # a vendor flipping a finished run back: never obeyed
    ["QUEUED", "MYSTERY", "COMPLETED"],  # an undocumented status on the way
)


class JobMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._cm = start_blocking_portal()
        self.portal: BlockingPortal = self._cm.__enter__()
        self._dir = TemporaryDirectory()
        self.saves = 0
        self.backend = ScriptedBackend()
        self._sdk_cm = self.portal.wrap_async_context_manager(
            Sdk(self.backend, polling=PollingPolicy(min_interval_s=0.001, max_interval_s=0.005))
        )
        self.sdk: Sdk = self._sdk_cm.__enter__()
        self.job: Job = self.sdk.create_job(program="p0")
        self.task_ids_seen: set[str] = set()

    def teardown(self) -> None:
        try:
            self._sdk_cm.__exit__(None, None, None)
        finally:
            self._cm.__exit__(None, None, None)
            self._dir.cleanup()

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.portal.call(lambda: fn(*args, **kwargs))

    # -------------------------------------------------------------------- rules
    @initialize(script=st.sampled_from(SCRIPTS))
    def first_script(self, script: list[str]) -> None:
        self.backend.script_next(script)

    @rule(script=st.sampled_from(SCRIPTS))
    def queue_script(self, script: list[str]) -> None:
        self.backend.script_next(script)

    @rule()
    def execute(self) -> None:
        before_state, before_run = self.job.state, self.job.run
        try:
            self.call(self.job.execute, timeout_s=2)
        except JobTimeoutError:
            assert self.job.state.is_active
            return
        assert self.job.ended
        if before_state.is_active and before_state is not S.CREATED:
            assert self.job.run == before_run  # resumed, not resubmitted
        if before_state.is_terminal:
            assert self.job.run == before_run + 1  # the only way out: a new run

    @rule()
    def submit(self) -> None:
        before_state, before_run = self.job.state, self.job.run
        self.call(self.job.submit)
        assert self.job.state is not S.CREATED
        if before_state.is_terminal:
            assert self.job.run == before_run + 1
        else:
            assert self.job.run == before_run

    @rule()
    def cancel(self) -> None:
        before_state, before_run, before_history = self.job.state, self.job.run, len(self.job.history)
        self.call(self.job.cancel, "stop", timeout_s=2)
        assert self.job.ended
        assert self.job.run == before_run
        if before_state.is_terminal:
            assert self.job.state is before_state
            assert len(self.job.history) == before_history

    @rule()
    def cancel_if_active(self) -> None:
        before_state, before_run = self.job.state, self.job.run
        was_active = self.call(self.job.cancel_if_active, timeout_s=2)
        assert was_active is before_state.is_active
        assert self.job.run == before_run
        if before_state.is_terminal:
            assert self.job.state is before_state

    @rule()
    def refresh(self) -> None:
        before_state, before_run = self.job.state, self.job.run
        self.call(self.job.refresh, timeout_s=2)
        assert self.job.run == before_run
        if before_state is S.CREATED or before_state.is_terminal:
            assert self.job.state is before_state

    @rule(program=st.sampled_from(["p1", "p2"]))
    def reconfigure(self, program: str) -> None:
        before_state, before_run = self.job.state, self.job.run
        try:
            self.job.reconfigure(program=program)
        except JobStateError:
            assert before_state in (S.SUBMITTED, S.RUNNING)
            assert (self.job.state, self.job.run) == (before_state, before_run)
            return
        assert self.job.state is S.CREATED
        assert self.job.program == program
        assert self.job.run == before_run + (1 if before_state.is_terminal else 0)

    @rule()
    def save_and_load(self) -> None:
        self.saves += 1
        path = Path(self._dir.name) / f"job-{self.saves}.json"
        job = self.job
        self.call(job.save, path)
        loaded = self.call(self.sdk.load, path)
        assert isinstance(loaded, Job)
        assert (loaded.state, loaded.run, len(loaded.history), loaded.task_id) == (
            job.state,
            job.run,
            len(job.history),
            job.task_id,
        )
        assert loaded.program == job.program
        self.job = loaded  # carry on with the copy read from disk

    # --------------------------------------------------------------- invariants
    @invariant()
    def one_submission_per_run(self) -> None:
        job = self.job
        if job.task_id is not None:
            self.task_ids_seen.add(job.task_id)
        # Each run the job had at the vendor was submitted exactly once, and no other was made.
        assert self.backend.submissions == len(self.task_ids_seen), (self.backend.submissions, job.run)
        runs_at_vendor = job.run - (1 if job.state is S.CREATED else 0)
        assert self.backend.submissions <= runs_at_vendor

    @invariant()
    def one_history_entry_per_ended_run(self) -> None:
        job = self.job
        ended_runs = job.run if job.ended else job.run - 1
        assert len(job.history) == ended_runs, (job.state, job.run, len(job.history))


JobMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestJobMachine = JobMachine.TestCase
