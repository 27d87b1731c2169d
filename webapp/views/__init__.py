"""The app's blueprints, one per area; ``create_app`` registers them in this order."""

from .admin import bp as admin_bp
from .api import bp as api_bp
from .attachments import bp as attachments_bp
from .auth import bp as auth_bp
from .away import bp as away_bp
from .compliance import bp as compliance_bp
from .contracts import bp as contracts_bp
from .customers import bp as customers_bp
from .dashboard import bp as dashboard_bp
from .inbox import bp as inbox_bp
from .queues import bp as queues_bp
from .rewind import bp as rewind_bp
from .signers import bp as signers_bp
from .start import bp as start_bp
from .status import bp as status_bp
from .studio import bp as studio_bp
from .studio_changes import bp as studio_changes_bp
from .studio_tests import bp as studio_tests_bp
from .task import bp as task_bp

BLUEPRINTS = [auth_bp, queues_bp, task_bp, start_bp, contracts_bp, customers_bp, inbox_bp, status_bp, compliance_bp,
              admin_bp, api_bp, rewind_bp, signers_bp, attachments_bp, away_bp,
              studio_bp, studio_changes_bp, studio_tests_bp, dashboard_bp]
