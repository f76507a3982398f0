"""Smoke tests: every example runs, with few epochs, on the CPU backends, and says what
a user wants to see.

Examples write their files (plots, .onnx, .npz, data chunks) only into the folder given
by ``--out`` or, without it, into a fresh temporary folder: each test here runs in an
empty working directory that must stay empty, and the default temporary folder is
redirected into the test's own ``tmp_path`` so the outputs can be found and checked."""

import importlib.util
import os
import pathlib
import re
import tempfile

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path_factory, monkeypatch):
    """Run each test in an empty working directory, and fail if an example wrote there."""
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    yield cwd
    left = sorted(os.listdir(cwd))
    assert left == [], f"an example wrote into its working directory: {left}"


@pytest.fixture
def default_tmp(tmp_path, monkeypatch):
    """Where an example's default output folder (tempfile.mkdtemp) goes in this test."""
    folder = tmp_path / "default_tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _printed_path(out, pattern):
    """The path an example printed after ``pattern`` (a regular expression)."""
    match = re.search(pattern + r" (\S+)", out)
    assert match, f"nothing printed matches {pattern!r}:\n{out}"
    return pathlib.Path(match.group(1))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flags(bk):
    if bk.is_lazy:
        pytest.skip("dask trains these too, but slowly; test_model covers dask training")
    flags = ["--backend", bk.name]
    return flags + (["--device", bk.device_name] if bk.device_name else [])


def test_train_digits(cpu_bk, default_tmp, capsys):
    accuracy = _load("train_digits").main(_flags(cpu_bk) + ["--epochs", "8", "--quiet"])
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and "confusion matrix" in out
    assert accuracy > 0.9
    if importlib.util.find_spec("matplotlib") is not None:
        png = _printed_path(out, "training curve saved to")
        assert png.name == "digits_curve.png" and png.stat().st_size > 1000
        # the default: a fresh temporary folder, printed
        folder = _printed_path(out, "outputs go to")
        assert png.parent == folder and folder.parent == default_tmp
    else:  # the plot is optional: without matplotlib the example says nothing of it
        assert "training curve" not in out and os.listdir(default_tmp) == []


def test_train_digits_out_and_no_plot(tmp_path, capsys):
    module = _load("train_digits")
    module.main(["--epochs", "1", "--quiet", "--out", str(tmp_path / "out"), "--no-plot"])
    assert "training curve" not in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
    if importlib.util.find_spec("matplotlib") is not None:
        module.main(["--epochs", "1", "--quiet", "--out", str(tmp_path / "out")])
        assert os.listdir(tmp_path / "out") == ["digits_curve.png"]


def test_from_scratch(cpu_bk, capsys):
    accuracy = _load("from_scratch").main(_flags(cpu_bk) + ["--epochs", "5"])
    assert accuracy > 0.85
    assert "held-out accuracy" in capsys.readouterr().out


def test_regression(cpu_bk, capsys):
    r2 = _load("regression").main(_flags(cpu_bk) + ["--epochs", "40"])
    assert r2 > 0.2  # well above predicting the mean (R² = 0)
    assert "least squares" in capsys.readouterr().out


def test_portable_checkpoint(cpu_bk, default_tmp, capsys):
    worst = _load("portable_checkpoint").main(
        _flags(cpu_bk) + ["--epochs", "2", "--to", "numpy,array_api_strict"])
    assert worst < 1e-5
    out = capsys.readouterr().out
    assert out.count("same classes: True") == 2
    checkpoint = _printed_path(out, "saved")
    assert checkpoint.name == "digits.npz" and checkpoint.parent.parent == default_tmp
    assert checkpoint.stat().st_size > 0  # left for the user to load


def test_export_onnx(cpu_bk, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the ONNX example needs pip install 'anyfc[onnx]'")
    result = _load("export_onnx").main(_flags(cpu_bk) + [
        "--epochs", "3", "--repeats", "5", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert os.listdir(tmp_path / "out") == ["digits.onnx"]
    assert f"exported to {tmp_path / 'out' / 'digits.onnx'}" in out
    assert "onnxruntime serves 'input' -> 'probabilities'" in out and "batch 1024" in out
    assert result["accuracy_onnx"] == result["accuracy_anyfc"] > 0.85
    assert result["max_difference"] < 1e-5


def test_gpu_speedup_without_a_gpu_exits_cleanly(capsys):
    module = _load("gpu_speedup")
    if module.gpu_targets(None, None):
        pytest.skip("this machine has a GPU; the example really runs here")
    assert module.main([]) == {}
    assert "no GPU backend" in capsys.readouterr().out


def test_dask_out_of_core(dask_bk, tmp_path, capsys):
    result = _load("dask_out_of_core").main(
        ["--rows", "30000", "--chunk-rows", "3000", "--epochs", "1",
         "--out", str(tmp_path / "chunks")])
    out = capsys.readouterr().out
    assert "samples/s" in out and "lazy predict, 10 chunks" in out
    assert result["accuracy"] > 0.9
    assert len(list((tmp_path / "chunks").glob("chunk*.npy"))) == 20  # X and y, 10 chunks


def test_custom_layer(cpu_bk, capsys):
    flags = _flags(cpu_bk)
    accuracies = _load("custom_layer").main(flags + ["--epochs", "10"])
    out = capsys.readouterr().out
    assert f"check_layer on {cpu_bk.id}: forward error" in out
    assert accuracies[cpu_bk.name] > 0.95


def test_sklearn_pipeline(cpu_bk, capsys):
    result = _load("sklearn_pipeline").main(_flags(cpu_bk) + ["--max-iter", "20", "--cv", "2"])
    out = capsys.readouterr().out
    assert "best parameters" in out and "same predicted classes: True" in out
    assert result["accuracy"] > 0.9 and result["max_difference"] < 1e-5
