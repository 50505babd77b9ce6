"""moto_server, with DynamoDB's writes atomic as in the real service.

moto checks a ConditionExpression and then writes, with nothing held
between the two, so two concurrent conditional writes to one item can both
succeed (a TOCTOU race DynamoDB itself does not have: each conditional
write is atomic). The stores' compare-and-set relies on that atomicity,
and their conformance tests race replicas on purpose, so this runs moto's
own server with every DynamoDB request serialized. Other services are left
concurrent: an SQS long poll must not hold up the rest.

Usage: python moto_atomic.py HOST PORT
"""

import json
import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

app = DomainDispatcherApplication(create_backend_app)
app.debug = True  # as moto_server: errors come back with their reason
dynamodb = threading.Lock()


# DynamoDB requests served, by operation: what a delivery costs
# (GET /_relay/dynamodb-requests answers them as JSON).
requests = {}


def atomic_dynamodb(environ, start_response):
    if environ.get("PATH_INFO") == "/_relay/dynamodb-requests":
        start_response("200 OK", [("Content-Type", "application/json")])
        with dynamodb:
            return [json.dumps(requests).encode()]
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if not target.startswith("DynamoDB_"):
        return app(environ, start_response)
    with dynamodb:
        operation = target.split(".", 1)[-1]
        requests[operation] = requests.get(operation, 0) + 1
        # The whole body is produced under the lock: moto's answer is a list.
        return list(app(environ, start_response))


host, port = sys.argv[1], int(sys.argv[2])
run_simple(host, port, atomic_dynamodb, threaded=True, request_handler=MotoRequestHandler)
