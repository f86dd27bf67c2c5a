"""A hello-world Flask app: the yardstick the hook benchmark compares against."""

from __future__ import annotations

from flask import Flask, jsonify, request

app = Flask("hello")


@app.get("/hello")
def hello():  # type: ignore[no-untyped-def]
    return jsonify({"hello": "world", "padding": "x" * 900})


@app.post("/echo")
def echo():  # type: ignore[no-untyped-def]
    """The floor under the hook: receive and parse the same body, answer no cards."""
    body = request.get_json()
    return jsonify({"cards": [], "keys": len(body)})
