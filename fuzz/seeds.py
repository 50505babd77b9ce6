#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the shared fixtures, in
the input layouts of relay_core::decode::fuzz: fuzz/corpus/<target>/."""
import glob, json, os, sys

fixtures, out = sys.argv[1], sys.argv[2]
TEKTON = [f"dev.tekton.event.{o}.{v}.v1" for o in ("pipelinerun", "taskrun", "customrun", "run")
          for v in ("started", "running", "unknown", "successful", "failed")]

CDEVENTS = [f"dev.cdevents.{k}.{v}." for k, v in (
    ("pipelinerun", "queued"), ("pipelinerun", "started"), ("pipelinerun", "finished"),
    ("taskrun", "started"), ("taskrun", "finished"))]


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def body_bytes(body):
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


for path in sorted(glob.glob(os.path.join(fixtures, "*", "*.json"))):
    if path.endswith("scenario.json"):
        continue
    name = os.path.basename(os.path.dirname(path)) + "-" + os.path.basename(path)
    req = json.load(open(path))
    body = body_bytes(req["body"])
    transport = req.get("transport") or "http"
    if transport == "aws-lambda-eventbridge":
        put("eventbridge", name, body)
        continue
    if transport == "aws-lambda-sqs":
        put("sqs", name, body)
        continue
    headers = "".join(f"{k}: {v}\n" for k, v in req.get("headers", {}).items())
    put("ingress", name, headers.encode() + b"\n" + body)
    # auth: the same request after a request line (relay_core::auth::fuzz).
    method = req.get("method", "POST")
    put("auth", name, f"{method} /\n".encode() + headers.encode() + b"\n" + body)
    hdr = {k.lower(): v for k, v in req.get("headers", {}).items()}
    ty, source, data = hdr.get("ce-type"), hdr.get("ce-source", "/"), req["body"]
    if isinstance(data, dict) and "specversion" in data:  # structured mode
        ty, source, data = data.get("type"), data.get("source", "/"), data.get("data")
    if data is None:
        continue
    payload = body_bytes(data)
    if ty in TEKTON:
        put("tekton", name, bytes([TEKTON.index(ty)]) + source.encode() + b"\n" + payload)
    elif ty and ty.startswith("dev.cdevents."):
        # The first CDEVENTS_TYPES entry of the same subject and verb.
        kind_verb = ".".join(ty.split(".")[2:4]) + "."
        sel = next((i for i, t in enumerate(CDEVENTS) if kind_verb in t), 0)
        put("cdevents", name, bytes([sel]) + source.encode() + b"\n" + payload)
    if isinstance(data, dict) and "involvedObject" in data:
        put("flux", name, payload)
    ce = req["body"]
    if isinstance(ce, dict) and "specversion" in ce:
        put("eventbridge", "wrapped-" + name,
            json.dumps({"version": "0", "detail-type": ce.get("type"), "detail": ce}).encode())
        put("sqs", "wrapped-" + name,
            json.dumps({"Records": [{"messageId": "1", "body": json.dumps(ce)}]}).encode())

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
for path in sorted(glob.glob(os.path.join(root, "examples", "*.y*ml"))) + [
        os.path.join(root, "shared", "src", "config", "embedded-default.yaml")]:
    put("config", os.path.basename(path), open(path, "rb").read())
