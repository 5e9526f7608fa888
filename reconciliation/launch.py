"""Launch `reconcile_customer` runs through the code location, as the launchpad and the
nightly schedule do, and watch each one to its end.

Why not `execute_job` in this process: such runs have no code-location origin, so the UI
lists them under no job, calls them "manually launched" and cannot re-execute them; and a
run that dies (out of memory) would take the whole scan with it. Here each run is created
from the workspace's `RemoteJob` (remote origin, code-location and partition tags) and
started directly, not submitted to the run queue, which only a daemon would dequeue.
`watch` polls the run until it ends and marks it failed when its process is gone.

Where the run starts depends on the instance's run launcher:

- The DefaultRunLauncher (runs on this machine: `make run`, a support engineer's
  `reconcile scan`): the definitions load in this process (an in-process code location
  of `workspace.yaml`'s `reconciliation` entry) and each run executes in a fork of it,
  exactly as Dagster's run worker does (`dagster api execute_run`'s body). The fork
  starts in milliseconds with everything imported, where a code server and a run worker
  each imported Dagster and the definitions again: 3.5 s of a 3,000-student scan's 9.4 s.
  The run's data-quality process is started before the fork, and the first one before the
  command imports Dagster at all (`rules.data_quality.start_spare`). Only a process that
  says it may fork does (`allow_forked_runs`: the `reconcile` commands); one that has
  computed with polars would hand its children a thread pool without threads.
- Any other launcher (a container per run, in production), or a process that may not
  fork: through a code server of the workspace and `instance.launch_run`, so the launcher
  gets the location it expects.

The code server, the run workers and the definitions' own output (warnings, a crash's
traceback) go to `<instance folder>/logs/reconcile-scan.log`, not the terminal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import dagster as dg
from dagster._cli.api import _execute_run_command_body
from dagster._core.events import DagsterEvent
from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
from dagster._core.execution.run_cancellation_thread import start_run_cancellation_thread
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.remote_representation.code_location import CodeLocation
from dagster._core.remote_representation.external import RemoteJob, RemoteRepository
from dagster._core.remote_representation.external_data import PartitionTagsSnap
from dagster._core.remote_representation.grpc_server_registry import GrpcServerRegistry
from dagster._core.workspace.context import (
    WEBSERVER_GRPC_SERVER_HEARTBEAT_TTL,
    WorkspaceProcessContext,
    WorkspaceRequestContext,
)
from dagster._core.workspace.load_target import (
    InProcessWorkspaceLoadTarget,
    WorkspaceFileTarget,
    WorkspaceLoadTarget,
)
from dagster._grpc.server import GrpcServerCommand
from dagster._utils.interrupts import capture_interrupts

from reconciliation.credentials import redact
from reconciliation.paths import PROJECT_ROOT

LOCATION_NAME = "reconciliation"
# defs.jobs.RECONCILE_JOB, not imported: the scan never loads the definitions itself
RECONCILE_JOB = "reconcile_customer"
WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"
LOG_NAME = "reconcile-scan.log"

WORKER_DIED = "the run's process died (killed? out of memory?)"
# the engine event dagster's code server writes when it finds a run worker gone
_SERVER_CRASH = re.compile(
    r"Run execution process for \S+ (was terminated by signal \d+ \(\w+\)|"
    r"unexpectedly exited with code -?\d+)"
)
START_TIMEOUT = 300.0  # seconds a run may take to start its process (imports, a busy host)
POLL_INTERVAL = 0.25
HEALTH_INTERVAL = 10.0  # between a remote launcher's worker health checks (an API call)
# after a worker dies, the code server records the exit code within half a second:
# give it this long before recording the death ourselves
_GRACE = 2.0

_FINISHED = {
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
}


class LaunchError(Exception):
    """The code location did not load, or a run could not be created or launched."""


@dataclass
class ReconcileLocation:
    """The `reconciliation` code location of a loaded workspace, ready to launch runs."""

    instance: dg.DagsterInstance
    workspace: WorkspaceRequestContext
    location: CodeLocation
    repository: RemoteRepository
    job: RemoteJob
    #: start each run in a fork of this process, where the definitions are loaded (the
    #: DefaultRunLauncher's instance), instead of through the instance's run launcher
    fork_runs: bool = False
    _forked: dict[str, _ForkedWorker] = field(default_factory=dict)

    def partition_tags(self, partition: str) -> dict[str, str]:
        """The tags the launchpad gives a run of this partition, asked of the code server."""
        snap = self.location.get_partition_tags_from_repo(
            self.repository.handle, self.job.name, partition, self.instance
        )
        if not isinstance(snap, PartitionTagsSnap):
            raise LaunchError(f"partition {partition!r}: {_first_line(snap.error.message)}")
        return dict(snap.tags)

    def create_run(
        self,
        partition: str | None,
        *,
        tags: Mapping[str, str] | None = None,
        run_config: Mapping[str, object] | None = None,
    ) -> dg.DagsterRun:
        """A NOT_STARTED run of the whole job for one partition (None: a job without
        partitions, such as diagnose_student), as the launchpad creates it."""
        run_config = dict(run_config or {})
        plan = self.location.get_execution_plan(
            self.job,
            run_config,
            step_keys_to_execute=None,
            known_state=None,
            instance=self.instance,
        )
        return self.instance.create_run(
            job_name=self.job.name,
            run_id=None,
            run_config=run_config,
            resolved_op_selection=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None,
            status=dg.DagsterRunStatus.NOT_STARTED,
            root_run_id=None,
            parent_run_id=None,
            tags={
                **self.job.run_tags,
                **(self.partition_tags(partition) if partition is not None else {}),
                **(tags or {}),
            },
            job_snapshot=self.job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=self.job.parent_job_snapshot,
            remote_job_origin=self.job.get_remote_origin(),
            job_code_origin=self.job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=self.repository.asset_graph,
        )

    def launch(self, run: dg.DagsterRun) -> dg.DagsterRun:
        """Start the run's worker now, past the run queue (no daemon needed). A launch that
        fails leaves the run FAILURE in the instance and raises LaunchError."""
        if self.fork_runs:
            return self._fork(run)
        try:
            return self.instance.launch_run(run.run_id, self.workspace)
        except Exception as exc:  # the instance has recorded the failure on the run
            raise LaunchError(f"the run could not start: {_first_line(str(exc))}") from exc

    def _fork(self, run: dg.DagsterRun) -> dg.DagsterRun:
        """`instance.launch_run` with a fork of this process as the run worker: the same
        STARTING event, then the worker's own events from the child."""
        from reconciliation.defs.assets import forget_quality_process, start_quality_process

        if not fork_is_safe():  # the caller computed with polars since opening the location
            reason = "the run could not start: this process started a thread pool, so cannot fork"
            self.instance.report_run_failed(run, reason)
            raise LaunchError(reason)
        starting = DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_STARTING.value, job_name=run.job_name
        )
        self.instance.report_dagster_event(starting, run_id=run.run_id)
        quality = start_quality_process(run)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            if quality is not None:
                quality.close()
            self.instance.report_run_failed(self._run(run.run_id), f"fork failed: {exc}")
            raise LaunchError(f"the run could not start: {exc}") from exc
        if pid == 0:
            _execute_forked_run(self.instance, run.run_id)
        if quality is not None:
            quality.hand_over()
        forget_quality_process(run.run_id)
        self._forked[run.run_id] = _ForkedWorker(pid, quality)
        return self._run(run.run_id)

    def reexecute(
        self, parent_run_id: str, strategy: ReexecutionStrategy = ReexecutionStrategy.ALL_STEPS
    ) -> dg.DagsterRun:
        """Create and launch a re-execution, as the UI's Re-execute button does."""
        parent = self.instance.get_run_by_id(parent_run_id)
        if parent is None:
            raise LaunchError(f"no run {parent_run_id} in this instance")
        run = self.instance.create_reexecuted_run(
            parent_run=parent,
            request_context=self.workspace,
            code_location=self.location,
            remote_job=self.job,
            strategy=strategy,
            use_parent_run_tags=True,
        )
        return self.launch(run)

    def terminate(self, run_id: str) -> None:
        """Ask the run's worker to stop (the scan was interrupted): the run ends CANCELED
        instead of running on after the code server is gone."""
        forked = self._forked.get(run_id)
        if forked is not None:  # as the DefaultRunLauncher does: CANCELING, then SIGINT
            run = self.instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                self.instance.report_run_canceling(run)
            forked.interrupt()
            return
        with suppress(Exception):  # best effort on the way out; the run's events say the rest
            self.instance.run_launcher.terminate(run_id)

    def watch(self, run_id: str) -> tuple[dg.DagsterRun, str | None]:
        """Wait for the run to end. Returns the finished run and, when its process died
        and nobody else recorded it (the code server usually does), the reason this watch
        recorded on the run, which it marked FAILURE."""
        forked = self._forked.pop(run_id, None)
        if forked is not None:
            return self._watch_fork(run_id, forked)
        started = last_health_check = time.monotonic()
        worker: _Worker | None = None
        local_workers = isinstance(self.instance.run_launcher, DefaultRunLauncher)
        while True:
            run = self._run(run_id)
            if run.status in _FINISHED:
                return run, None
            if local_workers:
                worker = worker or _Worker.of_run(self.instance, run_id)
                if worker is not None and not worker.alive():
                    return self._died(run_id, WORKER_DIED)
            elif (
                self.instance.run_launcher.supports_check_run_worker_health
                and time.monotonic() - last_health_check > HEALTH_INTERVAL
            ):
                last_health_check = time.monotonic()
                health = self.instance.run_launcher.check_run_worker_health(run)
                if health.status.name == "FAILED":
                    return self._died(run_id, f"{WORKER_DIED}: {health.msg}")
            starting = worker is None and run.status != dg.DagsterRunStatus.STARTED
            if starting and time.monotonic() - started > START_TIMEOUT:
                return self._died(
                    run_id, f"the run's process did not start within {START_TIMEOUT:.0f} s"
                )
            time.sleep(POLL_INTERVAL)

    def _watch_fork(self, run_id: str, forked: _ForkedWorker) -> tuple[dg.DagsterRun, str | None]:
        """`watch` for a forked worker: how it ended comes straight from the kernel."""
        try:
            while True:
                ended = forked.poll()
                run = self._run(run_id)
                if run.status in _FINISHED:
                    forked.wait()
                    break
                if ended is not None:
                    forked.release_quality()
                    return self._died(run_id, f"{WORKER_DIED}: it {ended}")
                time.sleep(POLL_INTERVAL)
        except BaseException:  # interrupted: `terminate` must still reach the worker
            self._forked[run_id] = forked
            raise
        forked.release_quality()
        return run, None

    def _run(self, run_id: str) -> dg.DagsterRun:
        run = self.instance.get_run_by_id(run_id)
        if run is None:
            raise LaunchError(f"run {run_id} is no longer in the instance")
        return run

    def _died(self, run_id: str, reason: str) -> tuple[dg.DagsterRun, str | None]:
        """Record a run whose process is gone, unless it (or the code server) already did."""
        deadline = time.monotonic() + _GRACE
        while time.monotonic() < deadline:
            run = self._run(run_id)
            if run.status in _FINISHED:
                return run, None
            time.sleep(POLL_INTERVAL)
        self.instance.report_run_failed(run, reason)
        if self.instance.event_log_storage.supports_global_concurrency_limits:
            # a dead worker never gives back its pool slots: without the run monitoring
            # daemon they would block the next customers' Bookmarked reads for good
            self.instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        return self._run(run_id), reason


@dataclass
class _ForkedWorker:
    """A run worker forked from this process, and the data-quality process it was given."""

    pid: int
    quality: Any | None
    status: int | None = None

    def poll(self) -> str | None:
        """None while the worker runs; else how it ended, worded as Dagster's code server
        words it ("was terminated by signal 9 (SIGKILL)")."""
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == 0:
                return None
            self.status = status
        if os.WIFSIGNALED(self.status):
            number = os.WTERMSIG(self.status)
            return f"was terminated by signal {number} ({signal.Signals(number).name})"
        return f"unexpectedly exited with code {os.waitstatus_to_exitcode(self.status)}"

    def wait(self, timeout: float = 30.0) -> None:
        """Reap the worker once its run has ended; kill it if it does not exit."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                with suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                _, self.status = os.waitpid(self.pid, 0)
                return
            time.sleep(0.02)

    def interrupt(self) -> None:
        """Ask the worker to stop, as Dagster's code server does (SIGINT): its run ends
        CANCELED."""
        with suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)

    def release_quality(self) -> None:
        if self.quality is not None:
            self.quality.reap()
            self.quality = None


def _execute_forked_run(instance: dg.DagsterInstance, run_id: str) -> NoReturn:
    """The forked child: run the run as `dagster api execute_run` does, then exit at once
    (no interpreter teardown: the parent's objects are not this process's to clean up)."""
    code = 1
    try:
        os.setsid()  # the terminal's Ctrl-C reaches the scan, which interrupts the run
        with log_path(instance).open("ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        # the child's own storage connections, never the parent's
        with dg.DagsterInstance.from_ref(instance.get_ref()) as own, capture_interrupts():
            # the UI's Terminate marks the run CANCELING and asks a code server, which does
            # not know this process: Dagster's cancellation thread watches for it here
            watcher, stop = start_run_cancellation_thread(own, run_id)
            try:
                code = _execute_run_command_body(
                    run_id, own, lambda _event: None, set_exit_code_on_failure=False
                )
            finally:
                stop.set()
                watcher.join()
    except BaseException:  # the child must reach os._exit whatever happened
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@dataclass(frozen=True)
class _Worker:
    """The run worker process on this machine, from the run's "Started process" event."""

    pid: int

    @classmethod
    def of_run(cls, instance: dg.DagsterInstance, run_id: str) -> _Worker | None:
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
        ).records
        for record in records:
            event = record.event_log_entry.dagster_event
            metadata = event.engine_event_data.metadata if event else {}
            if "pid" in metadata and "Started process" in (event.message or ""):
                return cls(int(metadata["pid"].value))
        return None

    def alive(self) -> bool:
        stat = Path(f"/proc/{self.pid}/stat")
        if sys.platform.startswith("linux"):
            try:
                # a killed worker stays a zombie until the code server reaps it
                return stat.read_text().rpartition(")")[2].split()[0] != "Z"
            except OSError:
                return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def crash_reason(events: Sequence[dg.DagsterEvent]) -> str | None:
    """Why the run's process died, from the engine event dagster's code server writes when
    it finds a run worker gone, if it wrote one."""
    for event in events:
        if event.event_type != dg.DagsterEventType.ENGINE_EVENT:
            continue
        # "[DagsterApiServer] Run execution process for <id> was terminated by signal 9
        # (SIGKILL). This usually indicates ..." or "... unexpectedly exited with code 3."
        found = _SERVER_CRASH.search(event.message or "")
        if found:
            return f"{WORKER_DIED}: it {found.group(1)}"
    return None


def _first_line(message: str) -> str:
    return redact(message.strip().splitlines()[0] if message.strip() else "unknown error")


def log_path(instance: dg.DagsterInstance) -> Path:
    return Path(instance.root_directory) / "logs" / LOG_NAME


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Point this process's stdout and stderr at `path` while child processes start, so
    they inherit the file; ours are restored afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


#: set by the `reconcile` commands that launch runs (`allow_forked_runs`)
_forks_allowed = False
#: the worker threads of polars' pool (its Rust runtime's too), by their names in /proc
_POOL_THREAD = re.compile(r"polars-\d+|tokio-rt-worker")


def allow_forked_runs() -> None:
    """Declare this process fit to fork its runs: `reconcile scan` and `reconcile diagnose`
    import polars and pyarrow (settings validation loads the connectors) but compute
    nothing with them before their runs start. A process that has (a test that built demo
    data, a notebook) must not fork: a fork copies a thread pool's locks, not its threads,
    and a child that then uses the pool blocks for good. Such callers go through a code
    server unless they say otherwise."""
    global _forks_allowed
    _forks_allowed = True


def fork_is_safe() -> bool:
    """Whether a fork of this process can run a run: allowed, and no polars pool started
    (a check where /proc tells; pyarrow's workers carry no name to check)."""
    if not (_forks_allowed and hasattr(os, "fork")):
        return False
    tasks = Path("/proc/self/task")
    if tasks.is_dir():
        for task in tasks.iterdir():
            with suppress(OSError):
                if _POOL_THREAD.fullmatch((task / "comm").read_text().strip()):
                    return False
    return True


def forks_runs(instance: dg.DagsterInstance) -> bool:
    """Whether this instance's runs start on this machine (the DefaultRunLauncher) and this
    process can fork them; else they go through a code server and the run launcher."""
    return type(instance.run_launcher) is DefaultRunLauncher and fork_is_safe()


@contextmanager
def open_location(
    instance: dg.DagsterInstance,
    workspace_file: Path = WORKSPACE_FILE,
    job_name: str = RECONCILE_JOB,
    *,
    fork_runs: bool | None = None,
) -> Iterator[ReconcileLocation]:
    """Load the project's workspace (`workspace.yaml`, as `make dev` does) and yield the
    `reconciliation` location: in this process when its runs are forked here (`fork_runs`,
    by default `forks_runs(instance)`), else with its own code server. Raises LaunchError
    naming the cause when the location does not load (its traceback goes to the log). On a
    normal exit, waits (up to 30 s) for a code server to finish with the last run worker
    and stop, so no process outlives the scan."""
    target: WorkspaceLoadTarget = WorkspaceFileTarget(paths=[str(workspace_file)])
    if fork_runs is None:
        fork_runs = forks_runs(instance)
    if fork_runs:
        target = InProcessWorkspaceLoadTarget(
            [
                InProcessCodeLocationOrigin(
                    origin.loadable_target_origin, location_name=origin.location_name
                )
                for origin in target.create_origins()
                if origin.location_name == LOCATION_NAME
            ]
        )
    registry = GrpcServerRegistry(
        instance_ref=instance.get_ref(),
        server_command=GrpcServerCommand.API_GRPC,
        heartbeat_ttl=WEBSERVER_GRPC_SERVER_HEARTBEAT_TTL,
        startup_timeout=instance.code_server_process_startup_timeout,
        log_level="WARNING",
        wait_for_processes_on_shutdown=False,
    )
    with registry:
        # a location that fails to load also comes as a UserWarning: the LaunchError below
        # says it once, and the log gets the traceback
        with _output_to(log_path(instance)), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            context = WorkspaceProcessContext(instance, target, grpc_server_registry=registry)
        with context:
            workspace = context.create_request_context()
            error = workspace.get_code_location_error(LOCATION_NAME)
            if error is not None:
                with log_path(instance).open("a") as log:
                    log.write(f"code location {LOCATION_NAME!r} did not load:\n{error}\n")
                root = error
                while root.cause is not None:  # "DagsterUserCodeLoadError: ..." wraps the cause
                    root = root.cause
                raise LaunchError(
                    f"the code location {LOCATION_NAME!r} did not load: "
                    f"{_first_line(root.message)} (details in {log_path(instance)})"
                )
            if not workspace.has_code_location(LOCATION_NAME):
                raise LaunchError(f"{workspace_file} has no code location {LOCATION_NAME!r}")
            location = workspace.get_code_location(LOCATION_NAME)
            [repository] = location.get_repositories().values()
            yield ReconcileLocation(
                instance,
                workspace,
                location,
                repository,
                repository.get_full_job(job_name),
                fork_runs=fork_runs,
            )
        registry.shutdown_all_processes()
        with suppress(subprocess.TimeoutExpired):
            registry.wait_for_processes()
