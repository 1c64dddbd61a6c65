"""A Flask app on wasmdyno: a page with a form, the form's POST, and a JSON endpoint.

The buildpack imports this module at build time (no config vars then): read them per request, as below.
"""

import os
import sys

from flask import Flask, jsonify, render_template, request

app = Flask(__name__)


def greeting():
    return os.environ.get("GREETING", "Hello")


@app.get("/")
def index():
    return render_template("index.html", greeting=greeting(), name=request.args.get("name", "world"))


@app.post("/greet")
def greet():
    name = request.form.get("name", "").strip() or "stranger"
    return render_template("greeted.html", greeting=greeting(), name=name)


@app.route("/api/info", methods=["GET", "POST"])
def info():
    return jsonify(
        dyno=os.environ.get("DYNO"),
        greeting=greeting(),
        python=sys.version.split()[0],
        sent=request.get_json(silent=True),
    )
