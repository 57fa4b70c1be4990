"""The API's OpenAPI 3 document, built from the app's routes and the declarations on their views.

A view under ``/api/`` carries an ``@operation(...)`` next to its ``@bp.route``: a summary, who
may call it, its request body and its answers. ``document(app)`` walks ``app.url_map`` for every
rule under ``/api/``, takes the path parameters from the rule's converters and the rest from the
declaration; a rule whose view has none is listed in ``undocumented(app)`` (and a test fails).
The shared shapes (the error body, a submission, the board) are the ``SCHEMAS`` below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask
from werkzeug.routing import Rule

API_PREFIX = "/api/"
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
F = TypeVar("F", bound=Callable[..., Any])

_NULLABLE_NUMBER = {"type": ["number", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "Every refusal under /api/: the sentence to show, and the HTTP status again.",
        "required": ["error", "status"],
        "properties": {
            "error": {"type": "string", "examples": ["No submission of yours has that id."]},
            "status": {"type": "integer", "examples": [404]},
        },
    },
    "Submission": {
        "type": "object",
        "required": ["id", "status", "state", "pending", "filename", "created_at", "url"],
        "properties": {
            "id": {"type": "integer"},
            "status": {"type": "string", "enum": ["queued", "running", "graded", "invalid", "crashed",
                                                  "timed_out", "out_of_memory", "grader_fault"],
                       "description": "Where grading is (the result JSON's status once done)."},
            "status_label": {"type": "string", "description": "The status in words, as the pages show it."},
            "state": {"type": "string", "description": "The status's group, as the pages colour it."},
            "pending": {"type": "boolean", "description": "True while queued or running: poll again."},
            "filename": {"type": "string"},
            "sha256": {"type": "string", "description": "SHA-256 of the uploaded zip."},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": _NULLABLE_TIME,
            "finished_at": _NULLABLE_TIME,
            "counts_attempt": {"type": "boolean", "description": "Whether it used up one of your attempts."},
            "score": _NULLABLE_NUMBER,
            "max_score": _NULLABLE_NUMBER,
            "ranked_value": {**_NULLABLE_NUMBER, "description": "The value the board ranks by (0-1); "
                             "on the public part of the hidden set until the board freezes."},
            "score_text": {"type": "string", "description": "The score as the list shows it "
                           "(\"12.5 / 100\"), or \"—\" while pending, when invalid or refunded."},
            "ranked_text": {"type": "string", "description": "The ranked value as a percentage, or \"—\"."},
            "message": {"type": ["string", "null"]},
            "reason": {"type": "string", "description": "Why an invalid or failed upload ended so, "
                       "in one line (the message, cut); empty otherwise."},
            "url": {"type": "string", "description": "The submission's page in the browser."},
            "result": {"type": ["object", "null"], "description": "What you may see of the result JSON "
                       "(parts, scores, tests); only on GET /api/submissions/{id}, null until graded."},
            "remaining_attempts": {"type": "integer", "description": "Only in the answer to an upload."},
            "progress": {"$ref": "#/components/schemas/Progress"},
        },
    },
    "Progress": {
        "type": "object",
        "description": "Where a pending upload is: its place in the queue, then each part's state "
                       "while a worker grades it. The points come with the result.",
        "required": ["queue_position", "sentence", "brief", "parts"],
        "properties": {
            "queue_position": {"type": ["integer", "null"], "description": "1: the next upload a "
                               "worker takes; null unless queued."},
            "sentence": {"type": "string", "description": "Where the upload is, in words.",
                         "examples": ["Waiting for a grader: 3rd in line."]},
            "brief": {"type": "string", "description": "The same in a few words (the list's rows).",
                      "examples": ["2nd in line", "MyNet on FashionMNIST: running for 12 s"]},
            "parts": {"type": "array", "description": "Empty unless running.", "items": {
                "type": "object",
                "required": ["name", "title", "state", "seconds", "label"],
                "properties": {
                    "name": {"type": "string"},
                    "title": {"type": "string"},
                    "state": {"type": "string", "enum": ["waiting", "running", "done", "failed", "stopped"]},
                    "seconds": {"type": "number", "description": "Its runtime so far (running) or in all."},
                    "label": {"type": "string", "examples": ["running for 12 s"]},
                },
            }},
        },
    },
    "SubmissionList": {
        "type": "object",
        "required": ["remaining_attempts", "submissions"],
        "properties": {
            "remaining_attempts": {"type": "integer"},
            "submissions": {"type": "array", "items": {"$ref": "#/components/schemas/Submission"}},
        },
    },
    "Leaderboard": {
        "type": "object",
        "required": ["assignment", "version", "scope", "frozen", "columns", "rows"],
        "properties": {
            "assignment": {"type": "string"},
            "title": {"type": "string"},
            "version": {"type": "integer", "description": "Changes whenever the board does."},
            "scope": {"type": "string", "enum": ["public", "final"]},
            "frozen": {"type": "boolean"},
            "frozen_at": _NULLABLE_TIME,
            "public_fraction": {"type": "number"},
            "rank_by": {"type": "string"},
            "columns": {"type": "array", "items": {"type": "string"}},
            "pass_line": {"type": "number"},
            "bonus_points": {"type": "array", "items": {"type": "integer"}},
            "bonus_requires_all_passed": {"type": "boolean"},
            "bonus_deadline": _NULLABLE_TIME,
            "rows": {"type": "array", "items": {
                "type": "object",
                "description": "One student's best upload; plus one number per column.",
                "properties": {
                    "rank": {"type": "integer"}, "display_name": {"type": "string"},
                    "value": {"type": "number"}, "uploads": {"type": "integer"},
                    "submitted_at": {"type": "string", "format": "date-time"},
                    "bonus": {"type": "integer"}, "bonus_withheld": {"type": "boolean"},
                    "passed": {"type": "boolean"},
                },
                "additionalProperties": _NULLABLE_NUMBER,
            }},
        },
    },
}

SECURITY_SCHEMES = {
    "secret": {"type": "http", "scheme": "bearer",
               "description": "Your sign-in secret, the one your instructor sent you."},
    "session": {"type": "apiKey", "in": "cookie", "name": "leaderboard_session",
                "description": "A signed-in student's browser session (how the pages poll)."},
}
AUTH: dict[str, list[dict[str, list[str]]]] = {  # who may call: OpenAPI security requirements
    "public": [],
    "secret": [{"secret": []}],
    "secret_or_session": [{"secret": []}, {"session": []}],
}


@dataclass(frozen=True)
class Answer:
    """One documented response: its meaning and, for JSON, the schema name in ``SCHEMAS``."""

    description: str
    schema: str = "Error"
    media_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)  # header name -> description


@dataclass(frozen=True)
class Operation:
    """What the document says about one view (all its methods)."""

    summary: str
    description: str
    auth: str  # a key of AUTH
    answers: Mapping[int, Answer]
    body: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # media type -> schema
    path_params: Mapping[str, str] = field(default_factory=dict)  # name -> description
    header_params: Mapping[str, str] = field(default_factory=dict)  # name -> description
    tag: str = "submissions"


def operation(
    summary: str,
    *,
    answers: Mapping[int, Answer],
    auth: str = "public",
    description: str = "",
    body: Mapping[str, dict[str, Any]] | None = None,
    path_params: Mapping[str, str] | None = None,
    header_params: Mapping[str, str] | None = None,
    tag: str = "submissions",
) -> Callable[[F], F]:
    """Declare a view's part of the OpenAPI document (put it under the ``@bp.route`` lines)."""
    if auth not in AUTH:
        raise ValueError(f"unknown auth {auth!r}; one of {sorted(AUTH)}")
    op = Operation(summary, description, auth, dict(answers), dict(body or {}), dict(path_params or {}),
                   dict(header_params or {}), tag)

    def attach(view: F) -> F:
        view.__openapi__ = op  # type: ignore[attr-defined]  # read back by document()
        return view

    return attach


def api_rules(app: Flask) -> list[Rule]:
    """Every rule of the app under ``/api/``, in path order."""
    rules = (r for r in app.url_map.iter_rules() if r.rule.startswith(API_PREFIX))
    return sorted(rules, key=lambda r: r.rule)


def _methods(rule: Rule) -> list[str]:
    return sorted(m for m in (rule.methods or ()) if m not in IGNORED_METHODS)


def _declared(app: Flask, rule: Rule) -> Operation | None:
    return getattr(app.view_functions.get(rule.endpoint), "__openapi__", None)


def undocumented(app: Flask) -> list[str]:
    """``METHOD /path`` of every API route whose view has no ``@operation``."""
    return [f"{m} {r.rule}" for r in api_rules(app) if _declared(app, r) is None for m in _methods(r)]


def openapi_path(rule: Rule) -> str:
    """``/api/submissions/<int:submission_id>`` -> ``/api/submissions/{submission_id}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)


def _path_parameters(rule: Rule, op: Operation) -> list[dict[str, Any]]:
    params = []
    for name in sorted(rule.arguments):
        converter = type(rule._converters[name]).__name__  # IntegerConverter, UnicodeConverter, ...
        schema = {"type": "integer"} if converter == "IntegerConverter" else {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema,
                       "description": op.path_params.get(name, name.replace("_", " "))})
    return params


def _response(answer: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    if answer.media_type == "application/json":
        schema = {"$ref": f"#/components/schemas/{answer.schema}"} if answer.schema else {"type": "object"}
        out["content"] = {"application/json": {"schema": schema}}
    elif answer.media_type:
        out["content"] = {answer.media_type: {"schema": {"type": "string"}}}
    if answer.headers:
        out["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                          for name, text in answer.headers.items()}
    return out


def _operation(rule: Rule, method: str, op: Operation) -> dict[str, Any]:
    op_id = rule.endpoint.replace(".", "_") + ("" if len(_methods(rule)) == 1 else f"_{method.lower()}")
    out: dict[str, Any] = {
        "operationId": op_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": AUTH[op.auth],
        "responses": {str(code): _response(a) for code, a in sorted(op.answers.items())},
    }
    if op.description:
        out["description"] = op.description
    params = _path_parameters(rule, op) + [
        {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": text}
        for name, text in op.header_params.items()
    ]
    if params:
        out["parameters"] = params
    if op.body and method in ("POST", "PUT", "PATCH"):
        out["requestBody"] = {"required": True, "content": {t: {"schema": s} for t, s in op.body.items()}}
    return out


def document(app: Flask, *, server_url: str = "/") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the app's API (routes without a declaration are left out)."""
    spec = app.extensions["leaderboard"].spec
    paths: dict[str, dict[str, Any]] = {}
    for rule in api_rules(app):
        op = _declared(app, rule)
        if op is None:
            continue
        item = paths.setdefault(openapi_path(rule), {})
        for method in _methods(rule):
            item[method.lower()] = _operation(rule, method, op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{spec.title}: grading API",
            "version": "1",
            "description": "Upload a submission zip, follow its grading and read the leaderboard. "
                           "The page /api/docs explains it with curl examples.",
        },
        "servers": [{"url": server_url}],
        "tags": [{"name": "submissions", "description": "Your uploads and their results."},
                 {"name": "leaderboard", "description": "The public board."},
                 {"name": "documentation", "description": "This document and its page."}],
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }


def refusal(description: str, headers: Mapping[str, str] | None = None) -> Answer:
    """A refusal with the ``Error`` body."""
    return Answer(description, "Error", headers=dict(headers or {}))
