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
from collections.abc import Sequence

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
# Ready to use, with the course notebook's calls. The plotting ones need matplotlib.


def load_data(
    path: str, classes: str | Sequence[int] | None = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load an MNIST-like npz: ``(X_trn, y_trn), (X_tst, y_tst) = load_data('full-mnist.npz')``.

    The npz holds ``x_train``, ``y_train``, ``x_test`` and ``y_test`` (images (N, 28, 28)
    uint8, labels (N,)), the layout of Keras' ``mnist.npz``; ``python mnist_data.py``
    writes one from the four MNIST or FashionMNIST IDX files.

    ``classes`` keeps only those labels, e.g. ``'49'`` or ``(4, 9)``, and relabels them by
    their position: with ``'49'`` a 4 becomes 0 and a 9 becomes 1, the targets of a
    binary classifier. Without ``classes`` every sample keeps its label.

    Returns images as rows of pixels in [0, 1], float64 (N, 784), and labels as float64
    (N, 1) (the shape of a one-output network's prediction).
    """
    with np.load(path) as data:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in data]
        if missing:
            raise ValueError(f"{path} has no {', '.join(missing)}: write it with "
                             "python mnist_data.py (x_train, y_train, x_test, y_test)")
        splits = [(data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])]
    wanted = None if classes is None else [int(c) for c in classes]

    def prepare(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if wanted is not None:
            keep = np.isin(y, wanted)
            position = {label: i for i, label in enumerate(wanted)}
            x, y = x[keep], np.array([position[v] for v in y[keep].tolist()], dtype=np.int64)
        scale = 255.0 if x.dtype == np.uint8 else 1.0  # uint8 pixels -> [0, 1]
        x = np.asarray(x, dtype=np.float64).reshape(len(y), -1) / scale
        return x, y.astype(np.float64).reshape(-1, 1)

    (x_trn, y_trn), (x_tst, y_tst) = (prepare(x, y) for x, y in splits)
    if len(x_trn) == 0:
        raise ValueError(f"{path} has no training samples of the classes {classes!r}")
    return (x_trn, y_trn), (x_tst, y_tst)


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # the layers themselves only need numpy
        raise ImportError("the plotting helpers need matplotlib: pip install matplotlib") from exc
    return plt


def _finish(fig, ax, *, legend, title, xlabel, ylabel, save_filepath):
    """Labels, legend, layout and the optional PNG of a line plot; returns the figure."""
    if title:
        ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    if save_filepath:
        fig.savefig(save_filepath)
    return fig


def _labels(legend: Sequence[str] | None, n: int) -> list[str | None]:
    names = list(legend or [])
    if names and len(names) != n:
        raise ValueError(f"{len(names)} legend entries for {n} curves")
    return names or [None] * n


def visualize_xy(
    xys: Sequence[tuple[np.ndarray, np.ndarray]],
    legend: Sequence[str] | None = None,
    *,
    labels: Sequence[str] | None = None,
    title: str = "",
    xlabel: str = "x",
    ylabel: str = "y",
    save_filepath: str | None = None,
):
    """Plot curves given as (x, y) pairs, e.g. a layer's output against its input::

        visualize_xy([(x, relu.forward(x))], ['ReLU'], title='ReLU', xlabel='x',
                     ylabel='ReLU(x)', save_filepath='layer_relu_forward.png')

    ``legend`` (or ``labels``) names the curves. Saves a PNG when ``save_filepath`` is
    given; returns the figure.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    names = _labels(legend if legend is not None else labels, len(xys))
    for (x, y), name in zip(xys, names, strict=True):
        x, y = np.asarray(x).reshape(-1), np.asarray(y).reshape(-1)
        order = np.argsort(x, kind="stable")
        ax.plot(x[order], y[order], label=name)
    return _finish(fig, ax, legend=any(names), title=title, xlabel=xlabel, ylabel=ylabel,
                   save_filepath=save_filepath)


def visualize_data(
    curves: Sequence[Sequence[float]],
    legend: Sequence[str] | None = None,
    *,
    title: str = "",
    xlabel: str = "epoch",
    ylabel: str = "",
    save_filepath: str | None = None,
    hline: float | None = None,
    hlinelabel: str | None = None,
):
    """Plot one value per epoch for each curve, e.g. losses or accuracies::

        visualize_data([val_losses, trn_losses], legend=['validation', 'training'],
                       xlabel='epoch', ylabel='MSE', save_filepath='numpy_nn_training.png')

    ``hline`` draws a dashed horizontal line (a pass mark, say) named ``hlinelabel``.
    Epochs count from 1. Saves a PNG when ``save_filepath`` is given; returns the figure.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    names = _labels(legend, len(curves))
    for values, name in zip(curves, names, strict=True):
        values = np.asarray(values, dtype=float).reshape(-1)
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=name)
    if hline is not None:
        ax.axhline(hline, color="red", linestyle="--", label=hlinelabel)
    ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs
    return _finish(fig, ax, legend=any(names) or bool(hlinelabel), title=title, xlabel=xlabel,
                   ylabel=ylabel, save_filepath=save_filepath)


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


def show_classification(images: np.ndarray, y_hat: np.ndarray, class_names: str | Sequence[str],
                        columns: int = 8):
    """Show images with their predicted class names in a new figure; returns the figure.

    ``class_names[i]`` names class i: with ``'49'`` a prediction of 0 shows "4" and 1
    shows "9". ``y_hat`` may be one output per image (a probability of class 1, rounded
    at 0.5, or a class index) or one score per class (the argmax is taken). Save the
    figure with ``plt.savefig('numpy_nn_classification.png')`` right after.
    """
    plt = _pyplot()
    images = _as_images(images)
    scores = np.asarray(y_hat, dtype=float).reshape(len(images), -1)
    if scores.shape[1] > 1:
        predicted = scores.argmax(axis=1)
    elif np.all((scores >= 0) & (scores <= 1)):
        predicted = (scores[:, 0] >= 0.5).astype(int)
    else:
        predicted = np.rint(scores[:, 0]).astype(int)
    cols = max(1, min(columns, len(images)))
    rows = max(1, math.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, predicted, strict=False):
        ax.imshow(image, cmap="gray")
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        ax.set_title(str(name), fontsize=10)
    fig.tight_layout()
    return fig
