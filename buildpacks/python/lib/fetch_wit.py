"""Fetches the WASI 0.2 interface definitions (WIT) that componentize-py builds against, from the crate that
wasmdyno's own wasi:http implementation comes from: its archive on crates.io, pinned by version and checked
against the sha256 in wasmdyno's Cargo.lock. Writes DEST/deps/*.wit and DEST/world.wit (the two worlds the
buildpack builds: `http`, a wasi:http/proxy component, and `command`, a wasi:cli/command one).

  python3 fetch_wit.py DEST CRATE VERSION SHA256 WASI_VERSION
"""

import hashlib
import io
import os
import sys
import tarfile
import urllib.request

dest, crate, version, sha256, wasi = sys.argv[1:6]
mirror = os.environ.get("WASMDYNO_CRATES_URL", "https://static.crates.io/crates").rstrip("/")
url = f"{mirror}/{crate}/{crate}-{version}.crate"
try:
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read(16 * 1024 * 1024)
except OSError as e:
    sys.exit(f"cannot download {url}: {e}")
got = hashlib.sha256(data).hexdigest()
if got != sha256:
    sys.exit(f"{url} has sha256 {got}, not the pinned {sha256}: refusing it")

prefix = f"{crate}-{version}/wit/deps/"
os.makedirs(os.path.join(dest, "deps"), exist_ok=True)
found = 0
with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
    for member in archive.getmembers():
        name = member.name
        if not (member.isfile() and name.startswith(prefix) and name.endswith(".wit")):
            continue
        rest = name[len(prefix):]
        if "/" in rest or rest.startswith("."):
            continue
        with open(os.path.join(dest, "deps", rest), "wb") as out:
            out.write(archive.extractfile(member).read())
        found += 1
if found == 0:
    sys.exit(f"{url} holds no WIT under wit/deps")
with open(os.path.join(dest, "world.wit"), "w", encoding="utf-8") as out:
    out.write(
        "package wasmdyno:python;\n\n"
        f"world http {{\n  include wasi:http/proxy@{wasi};\n}}\n\n"
        f"world command {{\n  include wasi:cli/command@{wasi};\n}}\n"
    )
