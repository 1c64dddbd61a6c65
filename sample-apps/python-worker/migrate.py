"""The release phase: runs before each release goes live; a non-zero exit would stop it."""

import os

print(f"migrate: schema up to date for release {os.environ.get('WASMDYNO_RELEASE')}")
