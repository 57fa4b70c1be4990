"""The leaderboard web service (Flask); imports grader, never the reverse."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so `grader worker` (leaderboard.worker) does not import Flask and the views.
    if name == "create_app":
        from leaderboard.app import create_app

        return create_app
    raise AttributeError(name)
