"""A Python program with a known hot function, profiled in-process by the real pyroscope-io.

Usage: python pyroscope_app.py SERVER_URL SECONDS TOKEN APP_NAME. hot_loop gets 3/4 of the CPU
and warm_loop 1/4. pyroscope-io 1.x pushes to /push.v1.PusherService/Push (the token as
the basic-auth password); 0.8.x posts to /ingest (the token as a bearer).
"""

import sys
import time

import pyroscope


def hot_loop(until: float) -> int:
    n = 0
    while time.monotonic() < until:
        n += 1
    return n


def warm_loop(until: float) -> int:
    n = 0
    while time.monotonic() < until:
        n += 1
    return n


def main() -> None:
    url, seconds, token, name = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
    options = {"application_name": name, "server_address": url, "sample_rate": 100,
               "tags": {"team": "perf", "region": "eu"}}  # fmt: skip
    if hasattr(pyroscope, "ProfilerImplementation"):  # 1.x
        options.update(basic_auth_username="pyroscope", basic_auth_password=token,
                       upload_interval=2)  # fmt: skip
    else:  # 0.8.x
        options.update(auth_token=token)
    pyroscope.configure(**options)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = time.monotonic()
        hot_loop(now + 0.15)
        warm_loop(now + 0.20)
    pyroscope.shutdown()  # flushes the last profile


if __name__ == "__main__":
    main()
