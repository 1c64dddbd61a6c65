"""`python` in a Python app's slug (written by buildpacks/python): `python SCRIPT ARGS`, `python -m MODULE ARGS`,
`python -c CODE`, or an interactive prompt, for one-off dynos (`wasmdyno run -a APP python manage.py ...`).

Unlike a Procfile type's component, nothing of the app is imported at build time: the slug carries the standard
library and the app's packages at the paths this interpreter was built with (python/, 0/, 1), so a script's
imports are read from the dyno's filesystem when it runs.
"""

import runpy
import sys

from _wasmdyno_cli import run_as_main
from wit_world import exports

USAGE = "usage: python SCRIPT [ARGS...] | python -m MODULE [ARGS...] | python -c CODE [ARGS...] | python"


def main(args):
    if not args:
        import code

        code.interact(banner=f"Python {sys.version.split()[0]} on wasmdyno", exitmsg="")
    elif args[0] == "-m" and len(args) > 1:
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    elif args[0] == "-c" and len(args) > 1:
        sys.argv = ["-c", *args[2:]]
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
    elif args[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    else:
        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")


class Run(exports.Run):
    def run(self):
        args = sys.argv[1:]
        run_as_main(lambda: main(args))
