"""/var/runtime/bootstrap.py of the lamina test python image (spec runtime-api.md §6.4).

sys.path becomes: LAMBDA_TASK_ROOT, /opt/python/lib/pythonX.Y/site-packages, /opt/python,
/var/lang/lib/pythonX.Y/site-packages, LAMBDA_RUNTIME_DIR, then the interpreter's own entries.
Then awslambdaric's entry point runs with [LAMBDA_TASK_ROOT, _HANDLER]; it takes the handler
from argv[1], the app root from the working directory and the API from AWS_LAMBDA_RUNTIME_API.
"""

import os
import sys


def set_default_sys_path():
    xy = "%d.%d" % sys.version_info[:2]
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    runtime_dir = os.environ.get("LAMBDA_RUNTIME_DIR", "/var/runtime")
    first = [
        task_root,
        "/opt/python/lib/python%s/site-packages" % xy,
        "/opt/python",
        "/var/lang/lib/python%s/site-packages" % xy,
        runtime_dir,
    ]
    rest = [p for p in sys.path if p not in first]
    sys.path[:] = first + rest


def main():
    os.environ.setdefault("PYTHONPATH", os.environ.get("LAMBDA_RUNTIME_DIR", "/var/runtime"))
    set_default_sys_path()
    from awslambdaric import __main__ as awslambdaricmain

    awslambdaricmain.main([os.environ.get("LAMBDA_TASK_ROOT", "/var/task"), os.environ["_HANDLER"]])


if __name__ == "__main__":
    main()
