"""A hello-world Flask app: the yardstick the hook benchmark compares against."""

from __future__ import annotations

from flask import Flask, jsonify

app = Flask("hello")


@app.get("/hello")
def hello():  # type: ignore[no-untyped-def]
    return jsonify({"hello": "world", "padding": "x" * 900})
