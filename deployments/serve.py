"""Serve the deployments of prefect.yaml from this process: no work pool, no worker.

`python -m nst_video.deployments.serve [--limit N]` (or `nst serve`): needs a Prefect server
(PREFECT_API_URL, see docs/deployment.md). Schedules and parameters come from
deployments/prefect.yaml and are checked first (deployments.validate); the work-pool
settings there are ignored on this path. Ctrl-C stops serving (schedules pause).
"""

from __future__ import annotations

import argparse
import os
import sys

from nst_video.deployments.validate import PREFECT_YAML, REPO_ROOT, DeploymentSpec, load_deployments


def to_runner_deployment(spec: DeploymentSpec):
    """A RunnerDeployment of the checked spec (same name, parameters and schedules)."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate

    schedules = [
        DeploymentScheduleCreate(schedule=schedule, active=active)
        for schedule, active in spec.schedules
    ]
    return spec.flow.to_deployment(
        name=spec.name,
        parameters=spec.parameters,
        schedules=schedules or None,
        description=spec.description,
        tags=spec.tags,
    )


def main(limit: int = 1, path: str | None = None) -> None:
    """Register and serve every deployment; runs at most `limit` flow runs at once."""
    from prefect import serve

    os.chdir(REPO_ROOT)  # relative paths in parameters (styles) resolve like on a worker
    specs = load_deployments(path or PREFECT_YAML)
    serve(*[to_runner_deployment(spec) for spec in specs], limit=limit)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m nst_video.deployments.serve", description=__doc__
    )
    parser.add_argument("--limit", type=int, default=1, help="flow runs at once")
    parser.add_argument("--prefect-file", default=None, help="default: deployments/prefect.yaml")
    args = parser.parse_args()
    sys.exit(main(limit=args.limit, path=args.prefect_file))
