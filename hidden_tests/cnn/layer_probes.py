"""How this lab's layer cases drive the student's ``numpy_nn.py`` inside the sandbox.

Loaded by the runner from the job folder (``probes = "layer_probes.py"`` in the spec); each
op gets the student's module, a recorder, the case's input arrays and its arguments, and
records every output (or the error that stopped it) under the key its checks compare.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from runner.common import describe, to_array
from runner.layers import Recorder


def _linear(mod: Any, rec: Recorder, a: dict[str, np.ndarray], args: dict[str, Any]) -> None:
    try:
        layer = mod.Linear(int(args["in"]), int(args["out"]))
    except Exception as exc:
        rec.fail_rest(["forward", "dx", "dW", "db"], f"Linear(...) raised {describe(exc)}")
        return
    layer.W = a["W"].copy()
    layer.b = a["b"].copy()
    if rec.take("forward", "Linear.forward", lambda: layer.forward(a["x"].copy())) is None:
        rec.fail_rest(["dx", "dW", "db"], "not run because Linear.forward failed")
        return
    if rec.take("dx", "Linear.backward", lambda: layer.backward(a["g"].copy())) is None:
        rec.fail_rest(["dW", "db"], "not run because Linear.backward failed")
        return
    rec.take("dW", "Linear.grads()['W']", lambda: layer.grads()["W"])
    rec.take("db", "Linear.grads()['b']", lambda: layer.grads()["b"])


def _linear_init(mod: Any, rec: Recorder, a: dict[str, np.ndarray], args: dict[str, Any]) -> None:
    try:
        layer = mod.Linear(int(args["in"]), int(args["out"]))
    except Exception as exc:
        rec.fail_rest(["W_shape", "b_shape", "W_live", "b_live"], f"Linear(...) raised {describe(exc)}")
        return
    rec.take("W_shape", "Linear.W", lambda: np.asarray(np.shape(layer.W)))
    rec.take("b_shape", "Linear.b", lambda: np.asarray(np.shape(layer.b)))

    def live(key: str) -> np.ndarray:
        params = layer.params()
        attr = getattr(layer, key)
        return np.asarray(
            isinstance(params[key], np.ndarray)
            and isinstance(attr, np.ndarray)
            and np.shares_memory(params[key], attr)
        )

    rec.take("W_live", "Linear.params()", lambda: live("W"))
    rec.take("b_live", "Linear.params()", lambda: live("b"))


def _activation(name: str) -> Callable[..., None]:
    def run(mod: Any, rec: Recorder, a: dict[str, np.ndarray], args: dict[str, Any]) -> None:
        try:
            layer = getattr(mod, name)()
        except Exception as exc:
            rec.fail_rest(["forward", "dx"], f"{name}() raised {describe(exc)}")
            return
        if rec.take("forward", f"{name}.forward", lambda: layer.forward(a["x"].copy())) is None:
            rec.fail_rest(["dx"], f"not run because {name}.forward failed")
            return
        rec.take("dx", f"{name}.backward", lambda: layer.backward(a["g"].copy()))

    return run


def _se(mod: Any, rec: Recorder, a: dict[str, np.ndarray], args: dict[str, Any]) -> None:
    try:
        loss = mod.SE()
    except Exception as exc:
        rec.fail_rest(["forward", "dy"], f"SE() raised {describe(exc)}")
        return
    if rec.take("forward", "SE.forward", lambda: loss.forward(a["y"].copy(), a["y_gt"].copy())) is None:
        rec.fail_rest(["dy"], "not run because SE.forward failed")
        return
    rec.take("dy", "SE.backward", lambda: loss.backward())


def _train(mod: Any, rec: Recorder, a: dict[str, np.ndarray], args: dict[str, Any]) -> None:
    """The course's training loop: update params() in place with grads()[k].mean(axis=0)."""
    steps, lr = int(args["steps"]), float(args["lr"])
    losses: list[float] = []

    def loop() -> np.ndarray:
        layer = mod.Linear(int(args["in"]), int(args["out"]))
        layer.W = a["W"].copy()
        layer.b = a["b"].copy()
        loss = mod.SE()
        for _ in range(steps):
            y = layer.forward(a["x"])
            losses.append(float(np.mean(loss.forward(y, a["y_gt"]))))
            layer.backward(loss.backward())
            params, grads = layer.params(), layer.grads()
            for key in params:
                params[key] -= lr * np.asarray(grads[key]).mean(axis=0)
        rec.arrays["b"] = to_array(layer.b, "Linear.b")
        return layer.W

    if rec.take("W", "training with Linear and SE", loop) is None:
        rec.fail_rest(["b"], "not run because training failed")
    rec.arrays["losses"] = np.asarray(losses, dtype=np.float64)


OPS: dict[str, Callable[..., None]] = {
    "linear": _linear,
    "linear_init": _linear_init,
    "relu": _activation("ReLU"),
    "sigmoid": _activation("Sigmoid"),
    "se": _se,
    "train": _train,
}
