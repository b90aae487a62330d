"""A handler that tries every way a function can put its credentials into the hub's output (tests/integration/
test_secrets.py): it prints them, logs them and raises an error that carries them."""

import logging
import os


def leaks(event, context):
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    token = os.environ.get("AWS_SESSION_TOKEN", "")
    print(f"leaking now: secret is {secret} token is {token}")
    logging.getLogger("leaky").warning("logged secret is %s", secret)
    raise RuntimeError(f"failed with secret is {secret}")
