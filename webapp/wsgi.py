"""The WSGI entry point for production servers: ``gunicorn 'webapp.wsgi:app'`` (docs/deployment.md).

Several worker processes must sign sessions and CSRF tokens with one key, so this refuses to start without
``LVYUE_SECRET_KEY`` instead of letting each worker pick its own and log people out at random.
"""

from __future__ import annotations

import os

from . import Config, create_app

if not os.environ.get("LVYUE_SECRET_KEY"):
    raise RuntimeError("LVYUE_SECRET_KEY is not set: every web worker must share one secret key (for example: "
                       "export LVYUE_SECRET_KEY=$(openssl rand -hex 32))")

app = create_app(Config)
