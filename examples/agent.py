#!/usr/bin/env python3
"""A small agent that moves money through the `intentctl serve` sidecar (standard library only).

It submits a Purple Flea dice bet with its own idempotency key, submits it again (the
sidecar must answer with the same intent), waits for it to settle, then asks Aeeron for
GPU hours without paying: the intent stops in `awaiting_payment`, the agent buys a payment
from the Aeeron simulator (`POST /v1/payments`), attaches it and waits for success.
It prints a JSON summary and exits 1 on anything it did not expect.

    python3 examples/agent.py --server http://127.0.0.1:7700 --aeeron http://127.0.0.1:AE_PORT
    (with `serve --token-env VAR`, pass --token-env VAR too)
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

# Long-poll per request, milliseconds (the server clamps at 30 000), and the whole wait budget.
WAIT_TIMEOUT_MS = 5_000
SETTLE_SECONDS_MAX = 60
REQUEST_SECONDS_MAX = 40
# States after which the engine does nothing on its own.
SETTLED_STATES = {"succeeded", "reconciled", "failed", "dead_lettered", "resolved", "awaiting_payment"}


class Surprise(Exception):
    """Anything the agent did not expect; the message says what."""


def call(method, url, body=None, token=None, headers=None):
    """Sends one request; returns (status, parsed JSON body). HTTP errors are answers too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_SECONDS_MAX) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        raise Surprise(f"{method} {url}: {error}") from error
    try:
        return status, json.loads(raw) if raw else None
    except ValueError as error:
        raise Surprise(f"{method} {url}: {status} with a body that is not JSON: {raw[:200]!r}") from error


def expect(status, body, wanted, what):
    if status not in wanted:
        raise Surprise(f"{what}: HTTP {status} (wanted {sorted(wanted)}): {body}")
    return body


class Sidecar:
    def __init__(self, base, token):
        self.base = base.rstrip("/")
        self.token = token

    def submit(self, connector, operation, params, key):
        body = {"connector": connector, "operation": operation, "params": params, "idempotency_key": key}
        return call("POST", self.base + "/v1/intents", body, self.token)

    def wait(self, intent_id):
        """Long-polls until the intent is settled (or awaiting payment); returns it."""
        deadline = time.monotonic() + SETTLE_SECONDS_MAX
        while True:
            status, intent = call("GET", f"{self.base}/v1/intents/{intent_id}/wait?timeout={WAIT_TIMEOUT_MS}",
                                  token=self.token)
            expect(status, intent, {200}, f"wait {intent_id}")
            if intent["state"] in SETTLED_STATES:
                return intent
            if time.monotonic() > deadline:
                raise Surprise(f"intent {intent_id} still {intent['state']} after {SETTLE_SECONDS_MAX} s")

    def attach_payment(self, intent_id, payment_id):
        status, body = call("POST", f"{self.base}/v1/intents/{intent_id}/payment",
                            {"payment_id": payment_id}, self.token)
        return expect(status, body, {200}, f"attach payment to {intent_id}")


def bet(sidecar, run_id):
    key = f"agent-py-{run_id}-bet"
    params = {"game": "dice", "amount": "10.00", "target": 50, "prediction": "over"}
    status, first = sidecar.submit("purple_flea", "bet", params, key)
    expect(status, first, {201}, "submit bet")
    status, again = sidecar.submit("purple_flea", "bet", params, key)
    expect(status, again, {200}, "resubmit bet with the same key")
    if again["id"] != first["id"]:
        raise Surprise(f"resubmission gave another intent: {first['id']} then {again['id']}")
    intent = sidecar.wait(first["id"])
    if intent["state"] not in {"succeeded", "reconciled"}:
        raise Surprise(f"bet ended {intent['state']}: {intent.get('reason')}")
    result = intent.get("result") or {}
    return {"intent": intent["id"], "key": key, "state": intent["state"],
            "outcome": result.get("outcome"), "payout": result.get("payout"),
            "attempts": intent["attempts"]}


def execute_with_payment(sidecar, aeeron, run_id):
    key = f"agent-py-{run_id}-gpu"
    params = {"action": "compute.gpu_hours", "params": {"gpu": "a100", "hours": 4},
              "budget": {"amount": "20.00", "currency": "USDC"}}
    status, submitted = sidecar.submit("aeeron", "execute", params, key)
    expect(status, submitted, {201}, "submit Aeeron execute")
    intent = sidecar.wait(submitted["id"])
    if intent["state"] != "awaiting_payment":
        raise Surprise(f"Aeeron execute without payment ended {intent['state']}, not awaiting_payment")
    reason = intent.get("reason") or {}
    details = reason.get("details") or {}
    if reason.get("code") != "payment_required" or "amount" not in details:
        raise Surprise(f"awaiting payment without payment_required details: {reason}")
    amount, currency = details["amount"], details.get("currency", "USDC")
    status, payment = call("POST", aeeron.rstrip("/") + "/v1/payments",
                           {"amount": amount, "currency": currency},
                           headers={"Idempotency-Key": f"agent-py-{run_id}-pay"})
    expect(status, payment, {201}, "create Aeeron payment")
    sidecar.attach_payment(intent["id"], payment["payment_id"])
    intent = sidecar.wait(intent["id"])
    if intent["state"] not in {"succeeded", "reconciled"}:
        raise Surprise(f"paid Aeeron execute ended {intent['state']}: {intent.get('reason')}")
    return {"intent": intent["id"], "key": key, "state": intent["state"], "paid": amount,
            "currency": currency, "payment_id": payment["payment_id"], "attempts": intent["attempts"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="sidecar base URL, e.g. http://127.0.0.1:7700")
    parser.add_argument("--aeeron", required=True, help="Aeeron (simulator) base URL, for POST /v1/payments")
    parser.add_argument("--token-env", metavar="VARIABLE", help="read the sidecar bearer token from this variable")
    args = parser.parse_args()
    token = os.environ.get(args.token_env) if args.token_env else None
    if args.token_env and not token:
        print(f"agent: environment variable {args.token_env} is not set", file=sys.stderr)
        return 2
    sidecar = Sidecar(args.server, token)
    run_id = uuid.uuid4().hex[:12]
    try:
        status, health = call("GET", sidecar.base + "/healthz")
        expect(status, health, {200}, "healthz")
        summary = {"bet": bet(sidecar, run_id), "aeeron": execute_with_payment(sidecar, args.aeeron, run_id)}
    except (Surprise, KeyError, TypeError) as error:
        print(f"agent: surprise: {error!r}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
