"""The WSGI entry point for production servers: ``gunicorn 'webapp.wsgi:app'`` (docs/deployment.md).

Several worker processes must sign sessions and CSRF tokens with one key, so this refuses to start without
``LVYUE_SECRET_KEY`` instead of letting each worker pick its own and log people out at random. It also refuses
while demo accounts still have the demo password printed in this repository (``LVYUE_ALLOW_DEMO_USERS=1``
allows them, for a demo or a load test).
"""

from __future__ import annotations

import os

from workflows.services import accounts

from . import Config, create_app

if not os.environ.get("LVYUE_SECRET_KEY"):
    raise RuntimeError("LVYUE_SECRET_KEY is not set: every web worker must share one secret key (for example: "
                       "export LVYUE_SECRET_KEY=$(openssl rand -hex 32))")

app = create_app(Config)

if os.environ.get("LVYUE_ALLOW_DEMO_USERS") != "1":
    weak = accounts.users_with_demo_password(app.extensions["lvyue"])
    if weak:
        raise RuntimeError(f"demo accounts with the published demo password are active: {', '.join(weak)}; "
                           "change their passwords or deactivate them (lvyue users …), or set "
                           "LVYUE_ALLOW_DEMO_USERS=1 for a demo")
