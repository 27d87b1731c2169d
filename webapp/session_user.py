"""The logged-in user as flask-login sees it: a thin wrapper around the service layer's UserView."""

from __future__ import annotations

from flask_login import UserMixin

from workflows.services.accounts import SUPERVISORY_ROLES, UserView


class SessionUser(UserMixin):
    def __init__(self, view: UserView) -> None:
        self.view = view

    def get_id(self) -> str:
        return str(self.view.id)

    def __getattr__(self, name: str):
        return getattr(self.view, name)

    @property
    def supervisory(self) -> bool:
        return bool(self.view.roles & SUPERVISORY_ROLES)
