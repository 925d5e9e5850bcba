"""secret-probe (test fixture): what a function sees of secret `?name=`: the file's content
under /var/openfaas/secrets (or null), whether it can change or add a file there, and
whether the value is anywhere in its environment."""

import os

FOLDER = "/var/openfaas/secrets"


def _writable(path):
    try:
        with open(path, "a"):
            return True
    except OSError:
        return False


def handle(event, context):
    name = event["query"].get("name", "")
    path = os.path.join(FOLDER, os.path.basename(name))
    try:
        with open(path) as f:
            value = f.read()
    except OSError:
        value = None
    return {
        "value": value,
        "can_change": _writable(path) if value is not None else False,
        "can_add": _writable(os.path.join(FOLDER, "added-by-function")),
        "in_env": value is not None and any(value in v for v in os.environ.values()),
    }
