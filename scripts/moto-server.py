"""moto server with DynamoDB writes applied one at a time, as DynamoDB applies a conditional write atomically.

moto's server is threaded and its DynamoDB backend checks a ConditionExpression and then writes without a
lock, so two concurrent conditional writes on one key can both succeed there (never on AWS). Requests to
other services (SQS long polls) still run concurrently.

Served by waitress, which keeps HTTP/1.1 connections open as AWS's endpoints do (Werkzeug's development
server closes every connection, so each SDK call would also pay a TCP connect and close); Werkzeug when
waitress is not installed.

Usage: moto-server.py -H 127.0.0.1 -p PORT
"""

import argparse
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

parser = argparse.ArgumentParser()
parser.add_argument("-H", "--host", default="127.0.0.1")
parser.add_argument("-p", "--port", type=int, default=5000)
args = parser.parse_args()

moto = DomainDispatcherApplication(create_backend_app)
dynamodb = threading.Lock()


def app(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
        with dynamodb:
            # The body is produced under the lock too.
            return list(moto(environ, start_response))
    return moto(environ, start_response)


try:
    from waitress import serve
except ImportError:
    serve = None

if serve is None:
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
else:
    # Enough workers for every long poll the tests and `make run` hold at once.
    serve(app, host=args.host, port=args.port, threads=64, ident=None)
