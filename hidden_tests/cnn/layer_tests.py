"""The hidden layer tests of this lab's ``numpy_nn.py`` (host only; the sandbox never sees this file).

The course's public examples plus seeded random cases for every class and method, with the
expected values computed here by a reference implementation. The grader calls
``build_cases(seed)`` with the spec's ``[assignment] seed``; ``layer_probes.py`` (next to
this file) runs each case's ``op`` on the student's layers inside the sandbox.
"""

from __future__ import annotations

import numpy as np

from grader.parts.layer_checks import Case, Check


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def ref_linear(W: np.ndarray, b: np.ndarray, x: np.ndarray, g: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "forward": x @ W + b,
        "dx": g @ W.T,
        "dW": x[:, :, None] * g[:, None, :],
        "db": g[:, None, :].copy(),
    }


def ref_train(W, b, x, y_gt, steps: int, lr: float) -> dict[str, np.ndarray]:
    W, b = W.copy(), b.copy()
    losses = []
    for _ in range(steps):
        y = x @ W + b
        losses.append(float(np.mean((y - y_gt) ** 2)))
        g = 2.0 * (y - y_gt)
        W -= lr * (x[:, :, None] * g[:, None, :]).mean(axis=0)
        b -= lr * g[:, None, :].mean(axis=0)
    return {"W": W, "b": b, "losses": np.asarray(losses)}


COURSE_X = np.array([[-2, -1.2, -0.4], [0.4, 1.2, 2]])
COURSE_W = np.array([[1, 0.6], [0.2, -0.2], [-0.6, -1]])
COURSE_B = np.array([[-0.5, 0.5]])
COURSE_G = np.array([[1, 1.33333333], [1.66666667, 2]])
COURSE_ACT_G = np.array([[-3, 1.2, -0.5], [-0.4, 2.2, 3]])

PER_SAMPLE_HINT = "store per-sample gradients: dL_wrt_W[n] = outer(x[n], dL_wrt_output[n])"
# Only shown when every Linear and SE test passes: then the fault is in how they work together.
TRAINING_HINT = (
    "every Linear and SE test passes, so look at how training uses them: params() must return "
    "the live arrays so that in-place updates reach the layer, grads() the per-sample gradients "
    "of the last backward, and forward must use the current W and b"
)


def _linear_case(cid: str, label: str, W, b, x, g) -> Case:
    _n, i = x.shape
    o = W.shape[1]
    ref = ref_linear(W, b, x, g)
    return Case(
        cid, "linear", {"in": i, "out": o}, {"W": W, "b": b, "x": x, "g": g},
        (
            Check(f"Linear.forward: {label}", "forward", ref["forward"], "forward must return x @ W + b",
                  method="Linear.forward"),
            Check(f"Linear.backward: dL/dx, {label}", "dx", ref["dx"],
                  "backward must return dL_wrt_output @ W.T", method="Linear.backward"),
            Check(f"Linear.backward: per-sample dL_wrt_W (N, in, out), {label}", "dW", ref["dW"],
                  PER_SAMPLE_HINT, method="Linear.backward"),
            Check(f"Linear.backward: per-sample dL_wrt_b (N, 1, out), {label}", "db", ref["db"],
                  "dL_wrt_b[n] is dL_wrt_output[n] with shape (1, out)", method="Linear.backward"),
        ),
    )


def _act_case(cid: str, op: str, label: str, x, g) -> Case:
    name = "ReLU" if op == "relu" else "Sigmoid"
    if op == "relu":
        fwd, dx = np.maximum(x, 0), g * (x > 0)
        hints = ("ReLU keeps positive inputs and sets the rest to 0",
                 "the gradient passes where the input was positive and is 0 elsewhere")
    else:
        s = _sigmoid(x)
        fwd, dx = s, g * s * (1 - s)
        hints = ("Sigmoid is 1 / (1 + exp(-x))",
                 "the gradient is dL_wrt_output * s * (1 - s) with s the forward output")
    return Case(
        cid, op, {}, {"x": x, "g": g},
        (
            Check(f"{name}.forward: {label}", "forward", fwd, hints[0], method=f"{name}.forward"),
            Check(f"{name}.backward: {label}", "dx", dx, hints[1], method=f"{name}.backward"),
        ),
    )


def _se_case(cid: str, label: str, y, y_gt) -> Case:
    return Case(
        cid, "se", {}, {"y": y, "y_gt": y_gt},
        (
            Check(f"SE.forward: {label}", "forward", (y - y_gt) ** 2,
                  "forward returns the element-wise squared error (y - y_gt) ** 2", method="SE.forward"),
            Check(f"SE.backward: {label}", "dy", 2 * (y - y_gt), "backward returns 2 * (y - y_gt)",
                  method="SE.backward"),
        ),
    )


def build_cases(seed: int) -> list[Case]:
    """The course's public examples, then seeded hidden cases."""
    rng = np.random.default_rng(seed)
    cases: list[Case] = [
        _linear_case("lin0", "course example", COURSE_W, COURSE_B, COURSE_X, COURSE_G),
    ]
    for k, (n, i, o) in enumerate([(7, 5, 4), (1, 3, 6), (16, 12, 1)], start=1):
        cases.append(_linear_case(
            f"lin{k}", f"hidden case {k} (N={n}, {i}->{o})",
            rng.normal(size=(i, o)), rng.normal(size=(1, o)),
            rng.normal(size=(n, i)) * 2, rng.normal(size=(n, o)),
        ))
    i, o = int(rng.integers(3, 9)), int(rng.integers(2, 7))
    cases.append(Case(
        "init", "linear_init", {"in": i, "out": o}, {},
        (
            Check(f"Linear: W has shape (in, out) = ({i}, {o})", "W_shape", np.array([i, o]),
                  "create W with shape (input_dimension, output_dimension)", method="Linear.__init__"),
            Check(f"Linear: b has shape (1, out) = (1, {o})", "b_shape", np.array([1, o]),
                  "create b with shape (1, output_dimension)", method="Linear.__init__"),
            Check("Linear.params: returns the live W array", "W_live", np.array(True),
                  "return {'W': self.W, 'b': self.b} itself, not copies", method="Linear.params"),
            Check("Linear.params: returns the live b array", "b_live", np.array(True),
                  "return {'W': self.W, 'b': self.b} itself, not copies", method="Linear.params"),
        ),
    ))
    for op in ("relu", "sigmoid"):
        cases.append(_act_case(f"{op}0", op, "course example", COURSE_X, COURSE_ACT_G))
        for dims in ((6, 5), (3, 4, 5), (2, 3, 4, 5)):
            label = f"hidden {len(dims)}-D input {dims}"
            cases.append(_act_case(
                f"{op}{len(dims)}", op, label, rng.uniform(-4, 4, size=dims), rng.normal(size=dims)
            ))
    y = np.linspace(-5, 5, 9)
    cases.append(_se_case("se0", "course example", y, 0.5 * y))
    cases.append(_se_case("se1", "hidden 2-D case", rng.normal(size=(8, 3)), rng.normal(size=(8, 3))))
    n, i, o, steps, lr = 32, 4, 2, 25, 0.05
    x = rng.normal(size=(n, i))
    true_w = rng.normal(size=(i, o))
    y_gt = x @ true_w + 0.3
    W0, b0 = rng.normal(size=(i, o)) * 0.1, np.zeros((1, o))
    ref = ref_train(W0, b0, x, y_gt, steps, lr)
    cases.append(Case(
        "train", "train", {"in": i, "out": o, "steps": steps, "lr": lr},
        {"W": W0, "b": b0, "x": x, "y_gt": y_gt},
        tuple(
            Check(f"Linear + SE: {steps} steps of the course's update rule reach the expected {key}",
                  key, ref[key], TRAINING_HINT, requires=("Linear", "SE"))
            for key in ("W", "b")
        ),
    ))
    return cases


