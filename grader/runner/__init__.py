"""Runs INSIDE the sandbox: stdlib, numpy and torch only; sees inputs, never labels.

Nothing here may import from the rest of ``grader``: the sandbox mounts this folder alone.
"""
