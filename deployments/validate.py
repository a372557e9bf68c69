"""Check deployments/prefect.yaml before it reaches a server: entrypoints load, schedules
parse, parameters fit the flow's signature. Configuration checks only, no deployment logic.

`python -m nst_video.deployments.validate [PATH]` prints one line per deployment, or one error line
per problem and exits 1. deployments.serve uses the same checks.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nst_video.nst_core.errors import InvalidSettingsError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # entrypoints import TensorFlow

PREFECT_YAML = Path(__file__).resolve().parent / "prefect.yaml"
REPO_ROOT = PREFECT_YAML.parent.parent
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")  # never in prefect.yaml


class DeploymentConfigError(InvalidSettingsError):
    """prefect.yaml names a missing flow, a bad schedule or parameters the flow refuses."""


@dataclass
class DeploymentSpec:
    """One checked deployment: its flow object, parameters and schedules."""

    name: str
    entrypoint: str
    flow: Any
    parameters: dict
    schedules: list = field(default_factory=list)
    description: str = ""
    tags: list[str] = field(default_factory=list)


def _load_flow(entrypoint: str):
    """The flow object at 'path/to/file.py:function' (relative to the repository root)."""
    from prefect.flows import load_flow_from_entrypoint

    path, _, name = entrypoint.partition(":")
    if not name or not (REPO_ROOT / path).is_file():
        raise ValueError(f"entrypoint {entrypoint!r} is not 'file.py:flow' under {REPO_ROOT}")
    return load_flow_from_entrypoint(f"{REPO_ROOT / path}:{name}")


def _schedule(raw: dict):
    """A Prefect schedule from one `schedules:` entry (cron, interval or rrule)."""
    from prefect.client.schemas.schedules import (
        CronSchedule,
        IntervalSchedule,
        RRuleSchedule,
    )

    kinds = {"cron": CronSchedule, "interval": IntervalSchedule, "rrule": RRuleSchedule}
    found = [key for key in kinds if key in raw]
    if len(found) != 1:
        raise ValueError("a schedule needs exactly one of cron, interval, rrule")
    fields = {k: v for k, v in raw.items() if k not in ("active", "parameters", "slug")}
    return kinds[found[0]](**fields)


def _problem(error: Exception) -> str:
    """One line from a pydantic or Prefect error."""
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()
        )
    return " ".join(str(error).split())


def check_deployment(raw: dict, *, require_all: bool = False) -> DeploymentSpec:
    """Validate one deployment entry; DeploymentConfigError names it and the problem.

    Parameters are checked with the flow's own validation (pydantic, like a run would).
    `require_all` also demands every required parameter (schedules run without input).
    """
    name = raw.get("name") or "<unnamed>"
    try:
        flow = _load_flow(raw.get("entrypoint", ""))
    except Exception as error:  # import errors, missing files, not a flow
        raise DeploymentConfigError(f"deployment {name!r}: {_problem(error)}") from None
    schedules = []
    for entry in raw.get("schedules") or []:
        try:
            schedules.append((_schedule(entry), bool(entry.get("active", True))))
        except (ValidationError, ValueError, TypeError) as error:
            raise DeploymentConfigError(
                f"deployment {name!r}: invalid schedule {entry}: {_problem(error)}"
            ) from None
    check_job_variables(name, raw.get("work_pool"))
    parameters = dict(raw.get("parameters") or {})
    _check_parameters(name, flow, parameters, require_all=require_all or bool(schedules))
    return DeploymentSpec(
        name=name,
        entrypoint=raw["entrypoint"],
        flow=flow,
        parameters=parameters,
        schedules=schedules,
        description=raw.get("description", ""),
        tags=list(raw.get("tags") or []),
    )


def _check_parameters(name: str, flow, parameters: dict, *, require_all: bool) -> None:
    """Unknown names, wrong types, out-of-range values; missing ones if `require_all`."""
    import inspect

    signature = inspect.signature(flow.fn)
    unknown = sorted(set(parameters) - set(signature.parameters))
    if unknown:
        raise DeploymentConfigError(
            f"deployment {name!r}: unknown parameter(s) {', '.join(unknown)} for flow "
            f"{flow.name!r} (known: {', '.join(signature.parameters)})"
        )
    required = [
        p for p, spec in signature.parameters.items() if spec.default is inspect.Parameter.empty
    ]
    missing = [p for p in required if p not in parameters]
    if require_all and missing:
        raise DeploymentConfigError(
            f"deployment {name!r}: a scheduled run needs parameter(s) {', '.join(missing)}"
        )
    placeholders = {p: _placeholder(signature.parameters[p]) for p in missing}
    try:
        flow.validate_parameters({**placeholders, **parameters})
    except Exception as error:  # ParameterTypeError wraps pydantic's message
        raise DeploymentConfigError(
            f"deployment {name!r}: bad parameters: {_problem(error)}"
        ) from None


def check_job_variables(name: str, work_pool: dict | None) -> dict:
    """A deployment's `work_pool.job_variables`, checked as the process worker reads them.

    Every pool here is a process pool (a container runs a process worker too): unknown
    names, wrong types, and AWS secrets in `env` (they belong in a credentials block,
    NST_AWS_CREDENTIALS_BLOCK) are DeploymentConfigError naming the deployment.
    """
    from prefect.workers.process import ProcessVariables

    variables = dict((work_pool or {}).get("job_variables") or {})
    unknown = sorted(set(variables) - set(ProcessVariables.model_fields))
    if unknown:
        raise DeploymentConfigError(
            f"deployment {name!r}: unknown job variable(s) {', '.join(unknown)} for a process "
            f"pool (known: {', '.join(ProcessVariables.model_fields)})"
        )
    try:
        ProcessVariables.model_validate(variables)
    except ValidationError as error:  # locations and messages only, never the values
        raise DeploymentConfigError(
            f"deployment {name!r}: bad job variables: {_problem(error)}"
        ) from None
    secrets = sorted(set(variables.get("env") or {}) & set(_SECRET_ENV))
    if secrets:
        raise DeploymentConfigError(
            f"deployment {name!r}: {', '.join(secrets)} in job_variables.env; keep keys in "
            "an AwsCredentials block and set NST_AWS_CREDENTIALS_BLOCK instead"
        )
    return variables


def _placeholder(parameter) -> Any:
    """A value of the right type for a parameter given only at run time (source, ...)."""
    text = str(parameter.annotation)
    if "list" in text:
        return ["placeholder"]
    return 1 if text in ("int", "<class 'int'>") else "placeholder"


def load_deployments(path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    """Every deployment of a prefect.yaml, checked."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise DeploymentConfigError(f"{path}: {_problem(error)}") from None
    entries = (data or {}).get("deployments") or []
    if not entries:
        raise DeploymentConfigError(f"{path}: no deployments")
    return [check_deployment(entry) for entry in entries]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else PREFECT_YAML
    try:
        specs = load_deployments(path)
    except DeploymentConfigError as error:
        print(f"invalid: {error}", file=sys.stderr)
        return 1
    for spec in specs:
        when = ", ".join(str(getattr(s, "cron", s)) for s, _ in spec.schedules) or "on demand"
        print(f"ok: {spec.flow.name}/{spec.name} ({spec.entrypoint}; {when})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
