"""`python script.py` / `python -m module` as a wasi:cli/command component (written by buildpacks/python).

The script's code is compiled, and the modules it imports are imported, now: at build time, into componentize-py's
snapshot. The script itself runs when the command runs (wasi:cli/run), with the dyno's argv, env and stdin.
"""

import ast
import importlib
import importlib.util
import os
import sys
import traceback

from wit_world import exports

try:  # imported here, at build time: the bindings are in componentize-py's snapshot, not in the slug
    from wit_world.imports import exit as _wasi_exit
except ImportError:
    _wasi_exit = None


def _preimport(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [node.module + "." + alias.name for alias in node.names]
        else:
            continue
        for name in names:
            try:
                importlib.import_module(name)
            except BaseException:
                pass  # `from m import function` (not a module), or a module that needs the runtime


def _exit_status(e):
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1


def _exit(status):
    """Ends the component with `status` as a POSIX process would (the low 8 bits, so `sys.exit(-1)` is 255):
    through wasi:cli/exit's exit-with-code (WASI 0.2.12), which carries the number; where the interfaces lack it,
    through libc, whose exit carries only failure (the host sees 1)."""
    if hasattr(_wasi_exit, "exit_with_code"):
        _wasi_exit.exit_with_code(status & 0xFF)
    os._exit(status)


def run_as_main(work):
    """Runs `work()` as a program's main: its SystemExit is the exit status, an uncaught exception is printed and
    exits 1, and the output is flushed before the status goes to the host."""
    status = 0
    try:
        work()
    except SystemExit as e:
        status = _exit_status(e)
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if status != 0:
        _exit(status)


def command(script=None, module=None):
    """The Run class componentize-py exports: runs `script` (a path in the app) or `module` (`python -m`)."""
    if script is not None:
        path = os.path.join("/0", script)  # the app directory, as componentize-py mounts it at build time
        with open(path, encoding="utf-8") as f:
            source = f.read()
        code = compile(source, path, "exec")
        name = script
    else:
        spec = importlib.util.find_spec(module)
        if spec.submodule_search_locations is not None:  # a package: run its __main__
            module += ".__main__"
            spec = importlib.util.find_spec(module)
        source = spec.loader.get_source(module)
        code = spec.loader.get_code(module)
        path = name = spec.origin
    if source:
        _preimport(ast.parse(source))

    class Run(exports.Run):
        def run(self):
            sys.argv[0] = name
            main = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
            run_as_main(lambda: exec(code, main))

    return Run
