"""schemathesis hooks for scripts/test: the throwaway hub must never connect off this machine.

A generated camera URL that the hub would accept (it matches the document's pattern) is replaced
by one on 127.0.0.1 where nothing listens, so the camera's source only ever sees "connection
refused". URLs the hub refuses are left as generated: they are what negative cases test.
"""

import re

import schemathesis

# config::CAMERA_URL_PATTERN (fullmatch: Python's `$` would also match before a final newline).
ACCEPTED_URL = re.compile(r'rtsps?://[^/\s"][^\s"]*')
LOOPBACK_URL = "rtsp://127.0.0.1:9/schemathesis"


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if "/cameras" not in case.operation.path or not isinstance(case.body, dict):
        return
    url = case.body.get("url")
    if isinstance(url, str) and ACCEPTED_URL.fullmatch(url):
        case.body["url"] = LOOPBACK_URL
