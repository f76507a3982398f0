"""Smoke tests: every example runs, with few epochs, on the CPU backends, and says what
a user wants to see."""

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


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


def test_train_digits(cpu_bk, tmp_path, capsys):
    accuracy = _load("train_digits").main(
        _flags(cpu_bk) + ["--epochs", "8", "--quiet", "--plot", str(tmp_path / "c.png")])
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and "confusion matrix" in out
    assert accuracy > 0.9
    png = tmp_path / "c.png"
    if importlib.util.find_spec("matplotlib") is not None:
        assert png.stat().st_size > 1000 and "training curve saved" in out
    else:  # the plot is optional: without matplotlib the example says nothing of it
        assert not png.exists() and "training curve" not in out


def test_from_scratch(cpu_bk, capsys):
    accuracy = _load("from_scratch").main(_flags(cpu_bk) + ["--epochs", "5"])
    assert accuracy > 0.85
    assert "held-out accuracy" in capsys.readouterr().out


def test_regression(cpu_bk, capsys):
    r2 = _load("regression").main(_flags(cpu_bk) + ["--epochs", "40"])
    assert r2 > 0.2  # well above predicting the mean (R² = 0)
    assert "least squares" in capsys.readouterr().out


def test_portable_checkpoint(cpu_bk, capsys):
    worst = _load("portable_checkpoint").main(
        _flags(cpu_bk) + ["--epochs", "2", "--to", "numpy,array_api_strict"])
    assert worst < 1e-5
    assert capsys.readouterr().out.count("same classes: True") == 2


def test_export_onnx(cpu_bk, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the ONNX example needs pip install 'anyfc[onnx]'")
    result = _load("export_onnx").main(_flags(cpu_bk) + [
        "--epochs", "3", "--repeats", "5", "--out", str(tmp_path / "digits.onnx")])
    out = capsys.readouterr().out
    assert "onnxruntime serves 'input' -> 'probabilities'" in out and "batch 1024" in out
    assert result["accuracy_onnx"] == result["accuracy_anyfc"] > 0.85
    assert result["max_difference"] < 1e-5


def test_gpu_speedup_without_a_gpu_exits_cleanly(capsys):
    module = _load("gpu_speedup")
    if module.gpu_targets(None, None):
        pytest.skip("this machine has a GPU; the example really runs here")
    assert module.main([]) == {}
    assert "no GPU backend" in capsys.readouterr().out


def test_dask_out_of_core(dask_bk, capsys):
    result = _load("dask_out_of_core").main(
        ["--rows", "30000", "--chunk-rows", "3000", "--epochs", "1"])
    out = capsys.readouterr().out
    assert "samples/s" in out and "lazy predict, 10 chunks" in out
    assert result["accuracy"] > 0.9


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
