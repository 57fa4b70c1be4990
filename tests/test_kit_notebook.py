"""The kit follows the course: its notebook's calls run against numpy_nn.py's helpers, the
notebook runs headless and writes the report's four plots, and the zip check.py packs from
its outputs is graded without a "missing report file" note."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from grader.config import Assignment
from tests.test_template import SOLUTION, TEMPLATE, load_module, make_kit, result_lines, run_check

matplotlib.use("Agg")  # headless, as the kernel below

COURSE_PNGS = ("numpy_nn_training.png", "numpy_nn_classification.png",
               "pytorch_fcnet_training.png", "pytorch_cnn_training.png")
COURSE_ZIP = ("cnn.ipynb", "numpy_nn.py", "numpy_nn_training.png", "numpy_nn_classification.png",
              "pytorch_cnn.py", "pytorch_fcnet_training.png", "pytorch_cnn_training.png",
              "model.pt", "finetuned.pt")


def write_idx(path: Path, array: np.ndarray) -> None:
    """One gzipped IDX file of uint8 data, as MNIST and FashionMNIST ship them."""
    head = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four IDX files of a small MNIST-like set: 600 training and 100 test images whose
    class shows as a bright row, so a network can learn it."""
    folder = tmp_path_factory.mktemp("small-mnist")
    rng = np.random.default_rng(5)
    for split, n in (("train", 600), ("t10k", 100)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        images[np.arange(n), 2 + 2 * labels, :] = 250
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


# --------------------------------------------------------------------------- the helpers


def test_the_course_calls_run_against_the_kits_helpers(
        small_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook's own calls, quoted from the course, against the kit's numpy_nn.py."""
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    kit_data = load_module(TEMPLATE / "mnist_data.py", "_kit_test_mnist_data")
    kit_nn = load_module(TEMPLATE / "numpy_nn.py", "_kit_test_numpy_nn")
    load_data, visualize_xy = kit_nn.load_data, kit_nn.visualize_xy
    visualize_data, show_classification = kit_nn.visualize_data, kit_nn.show_classification
    kit_data.write_npz(small_mnist, Path("full-mnist.npz"))

    (X_trn_full, y_trn_full), (X_tst, y_tst) = load_data('full-mnist.npz', '49')
    assert X_trn_full.shape == (120, 784)
    assert y_trn_full.shape == (120, 1)
    assert X_tst.shape == (20, 784)
    assert y_tst.shape == (20, 1)
    assert X_trn_full.min() >= 0.0
    assert X_trn_full.max() <= 1.0
    # A 4 became class 0 and a 9 class 1 (each image's bright row names its label).
    bright_row = X_trn_full.reshape(-1, 28, 28).mean(axis=2).argmax(axis=1)
    assert np.array_equal(bright_row, np.where(y_trn_full[:, 0] == 0, 2 + 2 * 4, 2 + 2 * 9))
    (X_all, y_all), _ = load_data('full-mnist.npz')
    assert X_all.shape == (600, 784)
    assert sorted(np.unique(y_all)) == list(range(10))

    x = np.linspace(-3, 3, 61).reshape(-1, 1)
    forward_output = np.maximum(x, 0)
    fig = visualize_xy([(x, forward_output)], ['ReLU'], title='ReLU forward', xlabel='x',
                       ylabel='ReLU(x)', save_filepath='layer_relu_forward.png')
    [line] = fig.axes[0].get_lines()
    assert np.allclose(line.get_ydata(), forward_output[:, 0])
    assert fig.axes[0].get_xlabel() == 'x'
    assert fig.axes[0].get_title() == 'ReLU forward'

    val_losses, trn_losses = [0.3, 0.2, 0.15], [0.4, 0.25, 0.1]
    fig = visualize_data([val_losses, trn_losses], legend=['validation', 'training'],
                         xlabel='epoch', ylabel='MSE', save_filepath='numpy_nn_training.png')
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ['validation', 'training']
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == [1, 2, 3]

    validation_accuracies = [70.0, 78.5]
    fig = visualize_data([validation_accuracies], legend=['validation'], xlabel='epoch',
                         ylabel='%', save_filepath='pytorch_cnn_training.png', hline=75.0,
                         hlinelabel='Accuracy threshold (on test set)')
    assert 'Accuracy threshold (on test set)' in [
        t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert list(fig.axes[0].get_lines()[1].get_ydata()) == [75.0, 75.0]

    images = X_tst[:6].reshape(-1, 28, 28)
    y_hat = np.array([[0.1], [0.9], [0.4], [0.6], [0.0], [1.0]])
    show_classification(images, y_hat, '49')
    plt.savefig('numpy_nn_classification.png')
    assert [ax.get_title() for ax in plt.gcf().axes][:6] == ['4', '9', '4', '9', '4', '9']
    plt.close('all')

    for name in ('layer_relu_forward.png', 'numpy_nn_training.png', 'pytorch_cnn_training.png',
                 'numpy_nn_classification.png'):
        with Image.open(name) as png:
            assert png.format == "PNG"
            assert png.width > 100


def test_the_solution_ships_the_kits_helpers() -> None:
    """The reference numpy_nn.py (the notebook test's stand-in) has the kit's helpers, unchanged."""
    marker = "# --------------------------------------------------------------------------- helpers"
    kit_text, solution_text = (TEMPLATE / "numpy_nn.py").read_text(), (SOLUTION / "numpy_nn.py").read_text()
    assert solution_text[solution_text.index(marker):] == kit_text[kit_text.index(marker):]


def test_load_data_names_a_file_of_another_layout(tmp_path: Path) -> None:
    kit_nn = load_module(TEMPLATE / "numpy_nn.py", "_kit_test_numpy_nn_layout")
    np.savez(tmp_path / "other.npz", images=np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match=r"has no x_train, y_train, x_test, y_test: write it with "
                                         r"python mnist_data.py"):
        kit_nn.load_data(str(tmp_path / "other.npz"))


# --------------------------------------------------------------------------- the notebook


def test_the_notebook_is_a_clean_nbformat_4_notebook() -> None:
    import nbformat

    notebook = nbformat.read(TEMPLATE / "cnn.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    assert notebook.metadata.kernelspec.name == "python3"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "ship it unexecuted"
    source = "\n".join(c.source for c in code)
    for png in COURSE_PNGS:
        assert f'"{png}"' in source
    assert 'load_data("full-mnist.npz", "49")' in source
    assert ('show_classification(images, y_hat[:24], "49")\n'
            'plt.savefig("numpy_nn_classification.png")') in source


@pytest.mark.slow
def test_the_notebook_runs_and_its_outputs_pack_and_grade_without_a_missing_file_note(
        tmp_path: Path, small_mnist: Path, grader_home: Path, assignment: Assignment,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import nbclient
    import nbformat

    from grader.datasets.imagefolder import write_image_folder

    kit = make_kit(tmp_path, solution=True)
    write_image_folder(tmp_path / "dogs_cats", n=16, seed=3)
    for name, value in {"CNN_SMALL": "1", "CNN_PRETRAINED": "0", "MPLBACKEND": "Agg",
                        "FASHION_MNIST_DIR": str(small_mnist),
                        "DOGS_CATS_DIR": str(tmp_path / "dogs_cats"),
                        "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(name, value)  # the kernel inherits them
    notebook = nbformat.read(kit / "cnn.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(kit)}})
    client.execute()
    nbformat.write(notebook, kit / "cnn.ipynb")  # the student saves the run notebook

    for png in COURSE_PNGS:
        with Image.open(kit / png) as image:
            assert image.format == "PNG", png
    with np.load(kit / "full-mnist.npz") as data:  # written from the IDX files by mnist_data.py
        assert sorted(data.files) == ["x_test", "x_train", "y_test", "y_train"]

    proc = run_check(kit, "--pack")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(line.startswith("ok  ") for line in result_lines(proc.stdout).values()), proc.stdout
    assert "note:" not in proc.stdout
    with zipfile.ZipFile(kit / "submission.zip") as zf:
        assert sorted(zf.namelist()) == sorted(COURSE_ZIP)  # at the root, nothing else

    graded = subprocess.run(
        [sys.executable, "-c", "from grader.cli import main; main()", "grade",
         str(kit / "submission.zip"), "--json", str(tmp_path / "result.json")],
        env={**os.environ, "GRADER_HOME": str(grader_home)}, capture_output=True, text=True,
        timeout=600, check=False)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] != "invalid", result["message"]
    assert "missing" not in result["message"], result["message"]
    assert "expected for the report" not in graded.stdout
    # (Not every part's status: on a crowded machine MyNet may run over its time limit.)
    parts = {p["name"]: p for p in result["parts"]}
    assert parts["numpy_nn"]["passed"], parts["numpy_nn"]["message"]
