"""In-process runs started by the `aggassets` command: their instance, their console, their errors."""

import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

from dagster import DagsterInstance, DagsterInvalidConfigError, DagsterRunStatus, ExecuteInProcessResult, RunsFilter
from dagster._utils.error import SerializableErrorInfo

from aggassets.errors import AggassetsError

# The command prints its JSON result only: Dagster's console logger is silenced; every run's full event
# log is kept in the instance (the UI shows it when DAGSTER_HOME is set) and a failure's cause is the error.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


# host/boot/pid-namespace:pid of the `aggassets` command running a run in its own process. Killed outright
# (kill -9, out of memory), it leaves the run STARTED and holding its `warehouse` pool slot: Dagster's run
# monitoring cannot tell (no run worker of its launcher), so the next command or sensor tick there fails it
# and frees the slot.
CLI_PROCESS_TAG = "aggassets/cli_process"
PARENT_RUN_TAG = "dagster/parent_run_id"
_UNFINISHED = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def _process_space() -> str:
    """Where this process's pid means something: host name, boot and pid namespace (a container with the
    host's name but its own pids, or another machine of the same name, is another space)."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "/".join(parts)


def cli_run_tags() -> dict[str, str]:
    """The tags of a run this command runs in its own process."""
    return {CLI_PROCESS_TAG: f"{_process_space()}:{os.getpid()}"}


def _process_alive(pid: int) -> bool:
    """Whether a process of this pid exists (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_orphaned_cli_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed the unfinished runs of `aggassets` commands of this host (and pid namespace) whose process
    is gone, and free their pool slots (run monitoring frees them only where a daemon runs: without it, the
    next command would wait for the slot for ever); the ids of those runs."""
    failed = []
    storage = instance.event_log_storage
    for run in instance.get_runs(filters=RunsFilter(statuses=_UNFINISHED)):
        if PARENT_RUN_TAG in run.tags:  # a re-execution or retry copies the tags: a run worker runs it
            continue
        space, _, pid = run.tags.get(CLI_PROCESS_TAG, "").rpartition(":")
        if space == _process_space() and pid.isdigit() and not _process_alive(int(pid)):
            instance.report_run_failed(run, message=f"the aggassets command running it (pid {pid}) is gone")
            if storage.supports_global_concurrency_limits:
                storage.free_concurrency_slots_for_run(run.run_id)
            failed.append(run.run_id)
    return failed


def instance_for_runs() -> DagsterInstance:
    """The DAGSTER_HOME instance when set (runs show in the UI), else an ephemeral one. A DAGSTER_HOME
    Dagster cannot use (not an absolute path, no such folder, a broken dagster.yaml) is an AggassetsError."""
    if not os.environ.get("DAGSTER_HOME"):
        return DagsterInstance.ephemeral()
    try:
        with _root_warnings_kept_quiet():
            instance = DagsterInstance.get()
            instance.get_runs_count()  # its storage answers (a PostgreSQL storage's host, port, database)
    except DagsterInvalidConfigError as exc:  # dagster.yaml's entries, an unset environment variable
        texts = [_config_error_text(error.message) for error in exc.errors] or [str(exc)]
        raise AggassetsError(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}: {'; '.join(texts)}") from exc
    except Exception as exc:  # Dagster's, YAML's, and each storage's own types (dagster_postgres, SQLAlchemy)
        raise AggassetsError(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}: {_chain_message(exc)}") from exc
    fail_orphaned_cli_runs(instance)
    return instance


@contextlib.contextmanager
def _root_warnings_kept_quiet() -> Iterator[None]:
    """dagster-postgres logs each retry of a storage that does not answer on the root logger, which then
    prints to stderr (logging's basicConfig): a null handler takes them while the instance is probed."""
    quiet = logging.NullHandler()
    logging.root.addHandler(quiet)
    try:
        yield
    finally:
        logging.root.removeHandler(quiet)


def _config_error_text(message: str) -> str:
    """One configuration error on one line, without Dagster's stack trace (an unset environment variable:
    the variable's own sentence)."""
    text = message.split("Stack Trace:")[0]
    cause = re.search(r"PostProcessingError: (.*)", text, re.S)
    return " ".join((cause.group(1) if cause else text).split())


def _chain_message(exc: BaseException) -> str:
    """An error and its innermost cause (a storage's connection error under "too many retries"), one line."""
    root = exc
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    parts = [str(exc)] + ([str(root).splitlines()[0]] if root is not exc else [])
    return " ".join(": ".join(parts).split())


def root_message(error: SerializableErrorInfo) -> str:
    """The message of the innermost cause of a step failure (the user code's own error), one line."""
    while error.cause is not None:
        error = error.cause
    return " ".join(error.message.split())


def failure_causes(result: ExecuteInProcessResult) -> str:
    """The root causes of a failed run's step failures, on one line."""
    causes = [root_message(e.event_specific_data.error) for e in result.get_step_failure_events()]
    return "; ".join(dict.fromkeys(causes)) or "no step failed; the run's event log has the cause"
