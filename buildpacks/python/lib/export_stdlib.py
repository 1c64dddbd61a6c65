# Run once by componentize-py's pre-init (build time), where its embedded standard library is mounted at /python
# and this directory at /0: copies the library out, so slugs can carry it for imports made at runtime.
import shutil

shutil.copytree("/python", "/0/python", ignore=shutil.ignore_patterns("__pycache__", "test", "idlelib", "tkinter", "turtledemo", "ensurepip"))

from wit_world import exports


class Run(exports.Run):
    def run(self):
        pass
