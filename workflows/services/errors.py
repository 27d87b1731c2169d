"""Errors a service raises; each carries a message meant for the person who acted."""

from __future__ import annotations


class ServiceError(Exception):
    code = "error"
    status = 400  # the HTTP status the web layer answers with

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class NotFound(ServiceError):
    code = "not_found"
    status = 404


class PermissionDenied(ServiceError):
    code = "forbidden"
    status = 403


class FourEyesViolation(PermissionDenied):
    code = "four_eyes"


class Conflict(ServiceError):
    """The action lost a race or acts on a stale view: nothing was changed."""

    code = "conflict"
    status = 409


class InvalidInput(ServiceError):
    code = "invalid"
    status = 422

    def __init__(self, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


class ProcessError(ServiceError):
    """The process definition failed at run time (a script or condition); nothing was changed."""

    code = "process_error"
    status = 500


class Unavailable(ServiceError):
    """Something the server needs is not installed or not reachable (the operator must act)."""

    code = "unavailable"
    status = 503


class DeployRefused(ServiceError):
    code = "deploy_refused"

    def __init__(self, message: str, problems: list) -> None:
        super().__init__(message)
        self.problems = problems


class RaceLost(Conflict):
    """Another transaction changed the instance between our read and our write (version check failed)."""
