"""deps: proves that a pip dependency declared in the registry was installed.

The build installs `extra_dependencies` with `pip install --target <function>/deps`; the
runtime puts that folder on `sys.path`, so a plain `import six` works.
"""

import six


def handle(event, context):
    return {"package": "six", "version": six.__version__, "py3": six.PY3}
