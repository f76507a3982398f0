"""How tests/data/format2.npz was written: by anyfc at commit a89b236, whose writer wrote
format 2 (kept for the record; it needs that writer, so it is not run by the tests)."""
import json

import numpy as np

import anyfc
from anyfc import checkpoint, optimizers, schedules

assert checkpoint.FORMAT_VERSION == 2
rng = np.random.default_rng(11)
X = rng.standard_normal((24, 5))
y = rng.integers(0, 3, 24)
w = {"backend": "numpy", "dtype": "float64"}
model = anyfc.Sequential([
    anyfc.Dense(5, 8, {"name": "leaky_relu", "alpha": 0.2}, init="xavier_uniform", seed=0, **w),
    anyfc.BatchNorm(8, momentum=0.3, **w), anyfc.ReLU(**w), anyfc.Dropout(0.25, seed=3, **w),
    anyfc.Dense(8, 6, {"name": "elu", "alpha": 0.5}, seed=1, **w),
    anyfc.LayerNorm(6, eps=1e-3, **w),
    anyfc.Activation("gelu", **w), anyfc.Dense(6, 3, "identity", seed=2, **w)])
opt = optimizers.AdamW(schedules.CosineDecay(0.02, 10, warmup_steps=2), weight_decay=0.05)
model.fit(X, y, epochs=2, batch_size=8, shuffle=False, optimizer=opt, verbose=0)
model.save("tests/data/format2.npz")
np.savez("tests/data/format2_expected.npz", X=X, y=y, predictions=anyfc.to_numpy(model.predict(X)))
with np.load("tests/data/format2.npz") as a:
    print(json.dumps(json.loads(a["__anyfc__"].tobytes()), indent=1))
