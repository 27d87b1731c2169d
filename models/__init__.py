"""SQLAlchemy 2 typed models: the rows that queues, audits and timers are answered from."""

from .accounts import ApiToken, LoginAttempt, Role, User, UserRole
from .audit import AuditAnchor, AuditAnchorEntry, AuditChain, AuditEvent
from .base import Base, UTCDateTime
from .deployments import Deployment, DeploymentFile
from .instances import Instance, Step
from .notifications import Notification, OutboxEmail
from .tasks import TaskRow, Timer

__all__ = [
    "ApiToken", "AuditAnchor", "AuditAnchorEntry", "AuditChain", "AuditEvent", "Base", "Deployment",
    "DeploymentFile", "Instance", "LoginAttempt", "Notification", "OutboxEmail", "Role", "Step", "TaskRow", "Timer",
    "UTCDateTime", "User", "UserRole",
]
