"""``anyfc.set_seed``: one call makes initialisation, shuffling and dropout reproducible,
across processes, on every backend; explicit seeds still win; a refused ``fit`` takes
nothing from the stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import anyfc

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import anyfc
    backend, device = sys.argv[1], (sys.argv[2] or None)
    anyfc.set_seed(3)
    where = dict(backend=backend, device=device, dtype="float64")
    model = anyfc.Sequential([anyfc.Dense(4, 8, "relu", **where), anyfc.Dropout(0.3, **where),
                              anyfc.Dense(8, 3, "identity", **where)])
    X = np.linspace(-1, 1, 200).reshape(50, 4)
    y = np.arange(50) % 3
    history = model.fit(X, y, epochs=3, batch_size=8, verbose=0, validation_split=0.2)
    print(json.dumps({"loss": history.history["loss"],
                      "w": anyfc.to_numpy(model.layers[0].w).tolist()}))
""")


def _run(bk) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", SCRIPT, bk.name, bk.device_name or ""],
                         capture_output=True, text=True, env=env, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_one_seed_gives_identical_histories_in_two_processes(cpu_bk):
    first, second = _run(cpu_bk), _run(cpu_bk)
    assert first == second
    assert len(set(first["loss"])) == 3  # it trained


def test_the_stream_restarts_and_explicit_seeds_win():
    try:
        anyfc.set_seed(5)
        a = anyfc.Dense(3, 4, "relu", dtype="float64").w
        b = anyfc.Dense(3, 4, "relu", dtype="float64").w
        anyfc.set_seed(5)
        np.testing.assert_array_equal(anyfc.Dense(3, 4, "relu", dtype="float64").w, a)
        assert not np.array_equal(a, b)  # each draw takes the next seed of the stream
        explicit = anyfc.Dense(3, 4, "relu", dtype="float64", seed=1).w
        anyfc.set_seed(6)
        np.testing.assert_array_equal(anyfc.Dense(3, 4, "relu", dtype="float64", seed=1).w,
                                      explicit)
    finally:
        anyfc.set_seed(None)


def test_a_refused_fit_takes_nothing_from_the_stream():
    X, y = np.linspace(0, 1, 40).reshape(10, 4), np.arange(10) % 2

    def run(refuse_first: bool) -> list[float]:
        anyfc.set_seed(9)
        model = anyfc.Sequential([anyfc.Dense(4, 4, "relu"), anyfc.Dense(4, 2, "identity")])
        if refuse_first:
            with pytest.raises(ValueError, match="features"):  # found after the seed
                model.fit(np.ones((10, 5)), y, verbose=0)
        return model.fit(X, y, epochs=2, batch_size=3, verbose=0).history["loss"]

    try:
        assert run(True) == run(False)
    finally:
        anyfc.set_seed(None)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, 2**63])
def test_a_bad_seed_is_refused(bad):
    with pytest.raises(ValueError, match="set_seed needs None or an integer"):
        anyfc.set_seed(bad)
