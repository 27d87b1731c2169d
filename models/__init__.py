"""SQLAlchemy 2 typed models: the rows that queues, audits and timers are answered from."""

from .accounts import ApiToken, LoginAttempt, Role, User, UserRole
from .attachments import Attachment
from .audit import AuditAnchor, AuditAnchorEntry, AuditChain, AuditEvent
from .base import Base, UTCDateTime
from .consultations import Consultation
from .deployments import Deployment, DeploymentFile
from .instances import Instance, Step
from .notifications import Notification, OutboxEmail
from .records import AssignmentRule, Complaint, Contract, Customer, Installment, OwnershipChange, Payment, Quote
from .studio import Draft, ProcessTest
from .substitutes import Substitution
from .tasks import TaskRow, Timer

__all__ = [
    "ApiToken", "AssignmentRule", "Attachment", "AuditAnchor", "AuditAnchorEntry", "AuditChain", "AuditEvent", "Base",
    "Complaint", "Consultation", "Contract", "Customer", "Deployment", "DeploymentFile", "Draft", "Installment",
    "Instance", "LoginAttempt", "Notification", "OutboxEmail", "OwnershipChange", "Payment", "ProcessTest", "Quote",
    "Role", "Step", "Substitution", "TaskRow", "Timer", "UTCDateTime", "User", "UserRole",
]
