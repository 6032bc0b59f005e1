"""A webhook receiver for tests/webhooks.rs, on loopback, standard library only.

It checks each delivery's Standard Webhooks signature with Python's own
hmac (an implementation independent of taskyard's), records every request
as one JSON line, and answers 500 until the file `accept` next to the log
exists (or for the first FAIL_FIRST requests), then 204.

Usage: receiver.py LOG_PATH FAIL_FIRST SECRET[,SECRET...]|-
Prints `listening PORT` on stdout once it accepts connections.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

LOG_PATH = sys.argv[1]
FAIL_FIRST = int(sys.argv[2])
SECRETS = [] if sys.argv[3] == "-" else sys.argv[3].split(",")
ACCEPT_PATH = os.path.join(os.path.dirname(LOG_PATH), "accept")
seen = 0


def expected_signatures(webhook_id, timestamp, body):
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return [
        "v1," + base64.b64encode(hmac.new(s.encode(), signed, hashlib.sha256).digest()).decode()
        for s in SECRETS
    ]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        seen += 1
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        webhook_id = self.headers.get("webhook-id")
        timestamp = self.headers.get("webhook-timestamp")
        signature = self.headers.get("webhook-signature")
        valid = None
        if signature is not None:
            valid = sorted(signature.split(" ")) == sorted(
                expected_signatures(webhook_id, timestamp, body)
            )
        accept = seen > FAIL_FIRST and (FAIL_FIRST > 0 or os.path.exists(ACCEPT_PATH))
        record = {
            "path": self.path,
            "webhook_id": webhook_id,
            "timestamp": timestamp,
            "signature": signature,
            "signature_valid": valid,
            "content_type": self.headers.get("content-type"),
            "token": self.headers.get("x-handinger-token"),
            "body": json.loads(body),
            "answered": 204 if accept else 500,
        }
        with open(LOG_PATH, "a") as log:
            log.write(json.dumps(record) + "\n")
        self.send_response(204 if accept else 500)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
