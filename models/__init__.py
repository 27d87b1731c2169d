"""SQLAlchemy 2 typed models: the rows that queues, audits and timers are answered from."""

from .accounts import Role, User, UserRole
from .audit import AuditEvent
from .base import Base, UTCDateTime
from .deployments import Deployment, DeploymentFile
from .instances import Instance, Step
from .tasks import TaskRow, Timer

__all__ = [
    "AuditEvent", "Base", "Deployment", "DeploymentFile", "Instance", "Role", "Step", "TaskRow", "Timer",
    "UTCDateTime", "User", "UserRole",
]
