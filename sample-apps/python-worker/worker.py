"""A background worker: announces itself, then does its round of work every --every seconds, forever."""

import argparse
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--every", type=float, default=30.0)
args = parser.parse_args()

print(f"worker: {os.environ.get('DYNO')} ready, greeting {os.environ.get('GREETING', 'Hello')!r}", flush=True)
rounds = 0
while True:
    rounds += 1
    print(f"worker: round {rounds} done", flush=True)
    time.sleep(args.every)
