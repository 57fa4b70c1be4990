"""The grading engine: intake -> sandbox -> judge -> result."""

__version__ = "0.1.0"
