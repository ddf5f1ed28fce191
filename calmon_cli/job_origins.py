"""Runs the CLI executes in process, recorded as runs of the code location's jobs.

A job executed with execute_in_process is recorded without an origin: the UI lists such runs under
no code location, not under their job, and cannot re-execute them. Here every run the CLI's
instance creates is given the origins a run launched from workspace.yaml's code location has
(the code location the webserver and the daemon load), so `calmon monitor` runs sit beside the
schedule's runs.
"""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg

WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"
_ATTACHED = "_calmon_job_origins"


@functools.cache
def _repository_origins():
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
    from dagster._core.remote_origin import RemoteRepositoryOrigin
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    (location,) = location_origins_from_yaml_paths([str(WORKSPACE)])
    target = location.loadable_target_origin
    python = ReconstructableRepository.for_module(
        target.module_name, target.attribute, target.working_directory or str(WORKSPACE.parent)
    )
    return RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), python


def job_origins(job_name: str):
    """(RemoteJobOrigin, JobPythonOrigin) of the code location's job `job_name`."""
    from dagster._core.remote_origin import RemoteJobOrigin

    remote_repository, python_repository = _repository_origins()
    return (
        RemoteJobOrigin(remote_repository, job_name),
        python_repository.get_reconstructable_job(job_name).get_python_origin(),
    )


def record_runs_as_code_location_runs(instance: dg.DagsterInstance) -> None:
    """From now on, runs this instance creates for a job carry that job's code-location origins."""
    if getattr(instance, _ATTACHED, False):
        return
    create = instance.create_run_for_job

    def create_run_for_job(job_def, **kwargs):
        if kwargs.get("remote_job_origin") is None:
            remote, python = job_origins(job_def.name)
            kwargs["remote_job_origin"] = remote
            kwargs["job_code_origin"] = kwargs.get("job_code_origin") or python
        return create(job_def, **kwargs)

    instance.create_run_for_job = create_run_for_job  # type: ignore[method-assign]
    setattr(instance, _ATTACHED, True)
