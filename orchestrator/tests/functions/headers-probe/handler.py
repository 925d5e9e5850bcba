"""headers-probe (test fixture): answers the request headers it was given, as JSON, so a test
can see what the platform passes on to a function and what it keeps back."""


def handle(event, context):
    return {k.lower(): v for k, v in event["headers"].items()}
