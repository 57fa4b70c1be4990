"""Reference solution of part 1 (instructors only): the student template, filled in.

Same classes, base classes, attributes and helpers as ``student_template/numpy_nn.py``;
it reproduces every public value of the assignment to 6 decimals.

Shapes use N for the batch size (one row per sample).

The training loop of the notebook uses the layers like this::

    out = layer.forward(x)                  # forward pass, the layer remembers x
    dx = layer.backward(dL_wrt_out)         # backward pass, stores per-sample grads
    for k, p in layer.params().items():     # p is the layer's own array ...
        p -= lr * layer.grads()[k].mean(axis=0)   # ... so this updates the layer

The helpers at the bottom (``load_data``, ``visualize_data``, ``visualize_xy``,
``show_classification``) are ready to use; the plotting ones need matplotlib.
"""

from __future__ import annotations

import math

import numpy as np


class Layer:
    """Base class of all layers: a forward and a backward pass, maybe parameters."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute the output for input ``x`` and remember what backward needs."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dL_wrt_output: np.ndarray) -> np.ndarray:
        """Given dL/d(output), return dL/d(input) (same shape as the input)."""
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def params(self) -> dict[str, np.ndarray]:
        """The layer's trainable arrays by name (the live arrays, not copies)."""
        return {}

    def grads(self) -> dict[str, np.ndarray]:
        """Per-sample gradients of the loss w.r.t. ``params()``, under the same names."""
        return {}


class Loss:
    """Base class of losses: ``forward(y, y_gt)`` then ``backward()``."""

    def forward(self, y: np.ndarray, y_gt: np.ndarray) -> np.ndarray:
        """Return the loss of prediction ``y`` against the ground truth ``y_gt``."""
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self) -> np.ndarray:
        """Return dL/dy for the ``y`` of the last ``forward`` call."""
        raise NotImplementedError(f"{type(self).__name__}.backward")


class Linear(Layer):
    """Fully connected layer: ``y = x @ W + b``.

    Attributes:
        W: weights, shape (input_dimension, output_dimension).
        b: bias, shape (1, output_dimension).
        dL_wrt_W: after ``backward``, the per-sample weight gradients, shape
            (N, input_dimension, output_dimension).
        dL_wrt_b: after ``backward``, the per-sample bias gradients, shape
            (N, 1, output_dimension).
    """

    def __init__(self, input_dimension: int, output_dimension: int) -> None:
        self.input_dimension = input_dimension
        self.output_dimension = output_dimension
        # Small random weights (scaled by the fan-in) and zero bias.
        scale = 1.0 / np.sqrt(input_dimension)
        self.W = np.random.randn(input_dimension, output_dimension) * scale
        self.b = np.zeros((1, output_dimension))
        self.x: np.ndarray | None = None
        self.dL_wrt_W: np.ndarray | None = None
        self.dL_wrt_b: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x: (N, input_dimension) -> (N, output_dimension), ``x @ W + b``."""
        self.x = np.asarray(x, dtype=np.float64)
        return self.x @ self.W + self.b

    def backward(self, dL_wrt_output: np.ndarray) -> np.ndarray:
        """dL_wrt_output: (N, output_dimension) -> dL/dx: (N, input_dimension).

        Stores the per-sample gradients ``dL_wrt_W`` (N, in, out) and ``dL_wrt_b`` (N, 1, out).
        """
        g = np.asarray(dL_wrt_output, dtype=np.float64)
        # Outer product per sample: dL_wrt_W[n] = x[n]^T g[n].
        self.dL_wrt_W = self.x[:, :, None] * g[:, None, :]
        self.dL_wrt_b = g[:, None, :].copy()
        return g @ self.W.T

    def params(self) -> dict[str, np.ndarray]:
        """``{'W': W, 'b': b}``: the layer's own arrays, so in-place updates train the layer."""
        return {"W": self.W, "b": self.b}

    def grads(self) -> dict[str, np.ndarray]:
        """``{'W': dL_wrt_W, 'b': dL_wrt_b}``, the per-sample gradients of the last backward."""
        return {"W": self.dL_wrt_W, "b": self.dL_wrt_b}


class ReLU(Layer):
    """Element-wise ``max(0, x)``; works on inputs of any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x: any shape -> same shape, ``max(0, x)`` element-wise."""
        x = np.asarray(x, dtype=np.float64)
        self.mask = x > 0
        return np.where(self.mask, x, 0.0)

    def backward(self, dL_wrt_output: np.ndarray) -> np.ndarray:
        """dL_wrt_output: same shape as x -> dL/dx: the gradient where x > 0, else 0."""
        return np.where(self.mask, np.asarray(dL_wrt_output, dtype=np.float64), 0.0)


class Sigmoid(Layer):
    """Element-wise ``1 / (1 + exp(-x))``; works on inputs of any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x: any shape -> same shape, the sigmoid of every element."""
        # The tanh form equals 1 / (1 + exp(-x)) and never overflows for large |x|.
        self.s = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))
        return self.s

    def backward(self, dL_wrt_output: np.ndarray) -> np.ndarray:
        """dL_wrt_output: same shape as x -> dL/dx = dL_wrt_output * s * (1 - s)."""
        return np.asarray(dL_wrt_output, dtype=np.float64) * self.s * (1.0 - self.s)


class SE(Loss):
    """Squared error, element-wise: ``(y - y_gt) ** 2``."""

    def forward(self, y: np.ndarray, y_gt: np.ndarray) -> np.ndarray:
        """y, y_gt: same shape -> the element-wise squared error, same shape."""
        self.diff = np.asarray(y, dtype=np.float64) - np.asarray(y_gt, dtype=np.float64)
        return self.diff**2

    def backward(self) -> np.ndarray:
        """dL/dy = 2 (y - y_gt), same shape as y."""
        return 2.0 * self.diff


# --------------------------------------------------------------------------- helpers


def load_data(
    path: str, class_a: int, class_b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load two digits of an npz file (x_train, y_train, x_test, y_test) for binary tasks.

    Keeps only the samples labelled ``class_a`` or ``class_b``, relabels them 0
    (``class_a``) and 1 (``class_b``), flattens every image to one row and
    standardises with the training set's mean and standard deviation.

    Returns ``x_train`` (N, D) float64, ``y_train`` (N, 1) float64, ``x_test``
    (M, D) and ``y_test`` (M, 1).
    """
    with np.load(path) as data:
        x_train, y_train = data["x_train"], data["y_train"]
        x_test, y_test = data["x_test"], data["y_test"]

    def two_classes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray(y).reshape(-1)
        keep = (y == class_a) | (y == class_b)
        x = np.asarray(x[keep], dtype=np.float64).reshape(int(keep.sum()), -1)
        return x, (y[keep] == class_b).astype(np.float64).reshape(-1, 1)

    x_train, y_train = two_classes(x_train, y_train)
    x_test, y_test = two_classes(x_test, y_test)
    if len(x_train) == 0:
        raise ValueError(f"{path} has no training samples of class {class_a} or {class_b}")
    # One mean and one deviation for all pixels: per-pixel deviations are 0 at the borders.
    mean, std = x_train.mean(), x_train.std()
    std = std if std > 0 else 1.0
    return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # the layers themselves only need numpy
        raise ImportError("the plotting helpers need matplotlib: pip install matplotlib") from exc
    return plt


def _as_images(x: np.ndarray) -> np.ndarray:
    """(N, D) rows or (N, H, W) / (N, 1, H, W) images -> (N, H, W)."""
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim == 3:
        return x
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(f"cannot show rows of length {x.shape[1]} as square images")
    return x.reshape(len(x), side, side)


def visualize_data(x: np.ndarray, y: np.ndarray, n: int = 16, title: str = ""):
    """Show the first ``n`` samples as a grid of images with their labels; returns the figure."""
    plt = _pyplot()
    images, labels = _as_images(x)[:n], np.asarray(y).reshape(len(x), -1)[:n]
    cols = min(8, len(images))
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, labels, strict=False):
        ax.imshow(image, cmap="gray")
        ax.set_title(str(label.squeeze()), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def visualize_xy(x: np.ndarray, y: np.ndarray, y_pred: np.ndarray | None = None, title: str = ""):
    """Plot a data set of 1-D or 2-D inputs; returns the figure.

    With x of shape (N, 1): y against x as points, and ``y_pred`` as a line if given.
    With x of shape (N, 2): the points coloured by y (or by ``y_pred`` if given).
    """
    plt = _pyplot()
    x = np.asarray(x).reshape(len(x), -1)
    y = np.asarray(y).reshape(-1)
    fig, ax = plt.subplots(figsize=(5, 4))
    if x.shape[1] == 1:
        ax.scatter(x[:, 0], y, s=10, label="data")
        if y_pred is not None:
            order = np.argsort(x[:, 0])
            ax.plot(x[order, 0], np.asarray(y_pred).reshape(-1)[order], "r", label="prediction")
            ax.legend()
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    elif x.shape[1] == 2:
        colour = y if y_pred is None else np.asarray(y_pred).reshape(-1)
        points = ax.scatter(x[:, 0], x[:, 1], c=colour, s=10, cmap="coolwarm")
        fig.colorbar(points, ax=ax)
        ax.set_xlabel("x[0]")
        ax.set_ylabel("x[1]")
    else:
        raise ValueError(f"visualize_xy shows 1-D or 2-D inputs, not {x.shape[1]}-D")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def show_classification(
    x: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, n: int = 16, title: str = ""
):
    """Show ``n`` images with predicted/true labels, mistakes in red; returns the figure.

    ``y_pred`` may be probabilities of class 1 (rounded at 0.5) or class indices.
    """
    plt = _pyplot()
    images = _as_images(x)[:n]
    truth = np.asarray(y_true).reshape(-1)[:n].astype(int)
    pred = np.asarray(y_pred, dtype=float).reshape(-1)[:n]
    pred = (pred >= 0.5).astype(int) if np.all((pred >= 0) & (pred <= 1)) else pred.astype(int)
    cols = min(8, len(images))
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p in zip(axes.flat, images, truth, pred, strict=False):
        ax.imshow(image, cmap="gray")
        ax.set_title(f"pred {p} / true {t}", fontsize=8, color="black" if p == t else "red")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
