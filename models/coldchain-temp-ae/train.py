#!/usr/bin/env python3
"""Train the `coldchain-temp-ae` sensor-anomaly autoencoder (deterministic).

Rerun from the repository root with:

    python3 models/coldchain-temp-ae/train.py

It writes, next to this file, `coldchain-temp-ae.onnx` and `manifest.toml`
(the sha256 and the threshold in the manifest are computed here). Nothing is
pinned at run time; the versions used are printed, and the versions used for
the committed model are listed in `requirements.txt` (onnxruntime there is only
for the optional ONNX-vs-sklearn check; the script runs without it).
Everything is seeded: the same library versions on the same machine give a
byte-identical ONNX file. Data generation uses numpy only
(`numpy.random.default_rng`, PCG64).

Generative model of NORMAL cold-chain temperature
-------------------------------------------------
(The Rust simulator implements the same model; it must match in distribution,
not draw for draw.) One reading every 30 s of simulated time; k = 0, 1, 2, ...
is the reading index of one device. Per device:

* setpoint  s ~ Uniform[2.0, 6.0] degC
* phase     phi ~ Uniform[0, 2*pi)
* AR(1)     a_0 = 0;  a_k = 0.7 * a_{k-1} + e_k,  e_k ~ N(0, 0.1^2)   (k >= 1)
* doors     when no door opening is in progress, at each reading with
            probability 1/240 an opening starts, lasting 1 or 2 readings
            (equal chance), the current reading being its first. open_k = 1
            while it lasts, else 0.
* bump      bump_{-1} = 0;  bump_k = 0.8 * bump_{k-1} + 0.3 * open_k
            (decays by 0.8 every reading; +0.3 degC for each reading with
            the door open, so a long opening saturates near 1.5 degC)
* reading   t_k = s + 0.4 * sin(2*pi * ((30*k) mod 86400) / 86400 + phi)
                  + a_k + bump_k

Features (the Rust side must compute exactly this)
--------------------------------------------------
* Baseline: EMA of temperature, alpha = 1/720, in f64.
  B_0 = t_0 (initialised to the first reading);
  B_j = B_{j-1} + alpha * (t_j - B_{j-1}) for j >= 1, folded in AFTER reading j,
  but only when |t_j - B_{j-1}| <= 1.0 (the gate); otherwise B_j = B_{j-1}.
  The gate keeps an excursion (a failing compressor) from dragging the baseline
  along, which would otherwise leave windows offset for hours after recovery.
* Window ending at reading k: readings t_{k-19}, ..., t_k (oldest first) and
  the baseline as it stood BEFORE reading k-19 was folded in, i.e. B_{k-20}
  (the baseline after folding in reading k-20):
      x_i = (t_{k-19+i} - B_{k-20}) / 2.0       for i = 0..19,
  computed in f64 and cast to f32 for the model.
* Warm-up: a window is scored only when k >= 79 (0-based), i.e. once the
  device has delivered at least 80 readings (40 min); then B_{k-20} has folded
  in at least 60 readings. Earlier readings only feed the baseline.
* Score: mean over the 20 features of (x_i - y_i)^2, y = model output
  (reconstruction). Anomaly when score > threshold (manifest `[sensor]`).

Model
-----
sklearn MLPRegressor autoencoder X -> X, hidden_layer_sizes=(6,),
activation='tanh', random_state=0, trained on 200 device-days of normal
windows (100 devices x 2 days, window stride 4), converted with skl2onnx
(float32 input "window" [N, 20], output fixed to [N, 20]).

Threshold: 1.5 x the maximum score on a fresh held-out normal set of 500
device-days (250 devices x 2 days, different seed, every window scored),
rounded UP to 3 significant digits.

Detection checks (printed): a compressor failure (linear rise of 8 degC over
60 min, +8/120 degC per reading, then held at +8 degC) and a door left open
for 20 min (40 readings with open_k = 1), each injected at a random reading of
the second day into 200 normal devices.
"""

import hashlib
import math
import os
import sys
import time

import numpy as np

import onnx
import skl2onnx
import sklearn
from onnx import numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.neural_network import MLPRegressor

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "coldchain-temp-ae"
ONNX_FILE = f"{NAME}.onnx"

# Generative model.
PERIOD_S = 30
DAY_S = 86400
READINGS_PER_DAY = DAY_S // PERIOD_S  # 2880
SETPOINT_RANGE = (2.0, 6.0)
DIURNAL_AMPL = 0.4
AR_COEF = 0.7
AR_SIGMA = 0.1
DOOR_P = 1.0 / 240.0
DOOR_STEP = 0.3
BUMP_DECAY = 0.8

# Features.
WINDOW = 20
ALPHA = 1.0 / 720.0
GATE = 1.0  # degC: readings further than this from the baseline are not folded in
SCALE = 2.0
FIRST_SCORED = 79  # first 0-based reading index that ends a scored window

# Data sets (seeds are fixed and distinct).
TRAIN_SEED, TRAIN_DEVICES, TRAIN_DAYS, TRAIN_STRIDE = 1001, 100, 2, 4
HELDOUT_SEED, HELDOUT_DEVICES, HELDOUT_DAYS = 2002, 250, 2
FAIL_SEED, DOOR_SEED, SCEN_DEVICES, SCEN_DAYS = 3003, 4004, 200, 2

HIDDEN = (6,)
THRESHOLD_FACTOR = 1.5

FAIL_RISE_C = 8.0
FAIL_RISE_READINGS = 120  # 60 min
DOOR_LEFT_OPEN_READINGS = 40  # 20 min


def simulate(rng, n, forced_open=None, extra=None):
    """One device, n readings of the normal model. `forced_open` (bool array)
    forces the door open at those readings; `extra` (degC array) is added to
    the readings (scenario injection). Returns t (f64, length n)."""
    setpoint = rng.uniform(*SETPOINT_RANGE)
    phi = rng.uniform(0.0, 2.0 * math.pi)
    eps = rng.normal(0.0, AR_SIGMA, n)
    u = rng.random(n)
    dur = rng.integers(1, 3, n)  # 1 or 2

    k = np.arange(n, dtype=np.int64)
    diurnal = DIURNAL_AMPL * np.sin(
        2.0 * math.pi * ((PERIOD_S * k) % DAY_S) / DAY_S + phi
    )

    ar = np.empty(n)
    bump = np.empty(n)
    a = 0.0
    b = 0.0
    left = 0
    for i in range(n):
        if i > 0:
            a = AR_COEF * a + eps[i]
        if left == 0 and u[i] < DOOR_P:
            left = int(dur[i])
        is_open = left > 0
        if is_open:
            left -= 1
        if forced_open is not None and forced_open[i]:
            is_open = True
        b = BUMP_DECAY * b + (DOOR_STEP if is_open else 0.0)
        ar[i] = a
        bump[i] = b
    t = setpoint + diurnal + ar + bump
    if extra is not None:
        t = t + extra
    return t


def baseline(t):
    """B_j after folding in reading j (B_0 = t_0); readings further than GATE from the
    baseline are not folded in, so an excursion does not drag the baseline along."""
    out = np.empty_like(t)
    b = t[0]
    out[0] = b
    for j in range(1, len(t)):
        if abs(t[j] - b) <= GATE:
            b = b + ALPHA * (t[j] - b)
        out[j] = b
    return out


def features(t):
    """Windows for every scored reading k >= FIRST_SCORED.
    Returns (ends k, X f64 [n_windows, 20])."""
    bl = baseline(t)
    ends = np.arange(FIRST_SCORED, len(t))
    idx = ends[:, None] + np.arange(-WINDOW + 1, 1)[None, :]
    x = (t[idx] - bl[ends - WINDOW][:, None]) / SCALE
    return ends, x


def normal_set(seed, devices, days, stride=1):
    rng = np.random.default_rng(seed)
    xs = []
    for _ in range(devices):
        t = simulate(rng, days * READINGS_PER_DAY)
        _, x = features(t)
        xs.append(x[::stride])
    return np.concatenate(xs)


def scores(model, x):
    """Score as the Rust side computes it: f32 features, f32 reconstruction
    (the ONNX model runs in f32; sklearn's f64 output is cast to f32)."""
    x32 = x.astype(np.float32)
    y = model.predict(x32.astype(np.float64)).astype(np.float32)
    d = x32.astype(np.float64) - y.astype(np.float64)
    return np.mean(d * d, axis=1)


def round_up_3sig(v):
    e = math.floor(math.log10(v)) - 2
    m = math.ceil(v / 10.0**e - 1e-9)
    return float(f"{m}e{e}")  # exact decimal literal, e.g. 0.0123


def scenario(model, threshold, seed, kind):
    """Inject `kind` at a random reading of day 2 into SCEN_DEVICES devices.
    Returns per-device (readings to cross or None, peak score after onset,
    false alarms before onset)."""
    rng = np.random.default_rng(seed)
    n = SCEN_DAYS * READINGS_PER_DAY
    res = []
    for _ in range(SCEN_DEVICES):
        k0 = int(rng.integers(READINGS_PER_DAY, n - 4 * FAIL_RISE_READINGS))
        forced = None
        extra = None
        if kind == "compressor":
            extra = np.zeros(n)
            steps = np.arange(1, n - k0 + 1, dtype=np.float64)
            extra[k0:] = np.minimum(steps * FAIL_RISE_C / FAIL_RISE_READINGS, FAIL_RISE_C)
        else:
            forced = np.zeros(n, dtype=bool)
            forced[k0:k0 + DOOR_LEFT_OPEN_READINGS] = True
        t = simulate(rng, n, forced_open=forced, extra=extra)
        ends, x = features(t)
        s = scores(model, x)
        pre = int(np.sum(s[ends < k0] > threshold))
        horizon = (ends >= k0) & (ends < k0 + 2 * FAIL_RISE_READINGS)
        post_s = s[horizon]
        post_k = ends[horizon]
        hit = np.nonzero(post_s > threshold)[0]
        # readings affected up to and including the first alarming one
        to_cross = int(post_k[hit[0]] - k0 + 1) if len(hit) else None
        res.append((to_cross, float(post_s.max()), pre))
    return res


def fix_reshape(model_onnx, width):
    """skl2onnx 1.20 reshapes a multi-output MLPRegressor output to (-1, 1);
    rewrite every such shape constant to (-1, width)."""
    fixed = 0
    inits = {i.name: i for i in model_onnx.graph.initializer}
    for node in model_onnx.graph.node:
        if node.op_type != "Reshape":
            continue
        name = node.input[1]
        if name in inits:
            arr = numpy_helper.to_array(inits[name])
            if arr.tolist() == [-1, 1]:
                inits[name].CopyFrom(
                    numpy_helper.from_array(np.array([-1, width], dtype=arr.dtype), name)
                )
                fixed += 1
    # Declared output shape: [N, width]
    for out in model_onnx.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) == 2:
            dims[1].ClearField("dim_param")
            dims[1].dim_value = width
    return fixed


def main():
    print(f"python {sys.version.split()[0]}  numpy {np.__version__}  "
          f"scikit-learn {sklearn.__version__}  skl2onnx {skl2onnx.__version__}  "
          f"onnx {onnx.__version__}")

    t0 = time.time()
    x_train = normal_set(TRAIN_SEED, TRAIN_DEVICES, TRAIN_DAYS, TRAIN_STRIDE)
    print(f"training windows: {len(x_train)} ({TRAIN_DEVICES * TRAIN_DAYS} device-days, "
          f"stride {TRAIN_STRIDE}); simulated in {time.time() - t0:.1f} s")

    t0 = time.time()
    model = MLPRegressor(
        hidden_layer_sizes=HIDDEN,
        activation="tanh",
        solver="adam",
        batch_size=200,
        learning_rate_init=1e-3,
        max_iter=200,
        tol=1e-7,
        n_iter_no_change=10,
        shuffle=True,
        random_state=0,
    )
    # Train on the f32-rounded features the model will see at inference.
    x_fit = x_train.astype(np.float32).astype(np.float64)
    model.fit(x_fit, x_fit)
    print(f"trained in {time.time() - t0:.1f} s: {model.n_iter_} epochs, "
          f"final loss {model.loss_:.6g}")

    train_s = scores(model, x_train)
    print(f"train score: mean {train_s.mean():.6g}  p99.9 {np.quantile(train_s, 0.999):.6g}  "
          f"max {train_s.max():.6g}")

    x_held = normal_set(HELDOUT_SEED, HELDOUT_DEVICES, HELDOUT_DAYS)
    held_s = scores(model, x_held)
    held_max = float(held_s.max())
    threshold = round_up_3sig(THRESHOLD_FACTOR * held_max)
    print(f"held-out normal: {len(x_held)} windows ({HELDOUT_DEVICES * HELDOUT_DAYS} device-days): "
          f"mean {held_s.mean():.6g}  p99.99 {np.quantile(held_s, 0.9999):.6g}  max {held_max:.6g}")
    print(f"threshold = ceil3sig({THRESHOLD_FACTOR} x {held_max:.6g}) = {threshold!r}")
    del x_held

    # ONNX conversion.
    onx = convert_sklearn(
        model,
        initial_types=[("window", FloatTensorType([None, WINDOW]))],
        target_opset=17,
    )
    fixed = fix_reshape(onx, WINDOW)
    onx.graph.name = NAME  # skl2onnx names the graph with a random uuid
    print(f"reshape constants fixed to (-1, {WINDOW}): {fixed}")
    onnx.checker.check_model(onx)
    in_name = onx.graph.input[0].name
    out_name = onx.graph.output[0].name
    onnx_path = os.path.join(HERE, ONNX_FILE)
    data = onx.SerializeToString()
    with open(onnx_path, "wb") as f:
        f.write(data)
    sha = hashlib.sha256(data).hexdigest()
    print(f"wrote {onnx_path} ({len(data)} bytes) sha256 {sha}")
    print(f"onnx input '{in_name}', output '{out_name}'")

    # Always: recompute the forward pass from the ONNX initializers in numpy
    # (f32), which checks the weights and the fixed output width without
    # onnxruntime.
    w = {i.name: numpy_helper.to_array(i) for i in onx.graph.initializer}
    assert [n.op_type for n in onx.graph.node] == [
        "Cast", "MatMul", "Add", "Tanh", "MatMul", "Add", "Reshape"], onx.graph.node
    xv = x_train[:5000].astype(np.float32)
    h = np.tanh(xv @ w["coefficient"] + w["intercepts"])
    y_np = (h @ w["coefficient1"] + w["intercepts1"]).reshape(w["shape_tensor"])
    assert y_np.shape == (len(xv), WINDOW), y_np.shape
    diff = float(np.abs(y_np - model.predict(xv.astype(np.float64))).max())
    print(f"numpy forward pass of the ONNX weights: output shape {y_np.shape}, "
          f"max |onnx - sklearn| = {diff:.3g}")
    assert diff < 1e-4, diff

    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
        print("onnxruntime not installed: ONNX output NOT verified against sklearn")
    if ort is not None:
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        xv = x_train[:5000].astype(np.float32)
        (y_onnx,) = sess.run([out_name], {in_name: xv})
        y_skl = model.predict(xv.astype(np.float64))
        diff = float(np.abs(y_onnx - y_skl).max())
        s_onnx = np.mean((xv - y_onnx).astype(np.float64) ** 2, axis=1)
        sdiff = float(np.abs(s_onnx - scores(model, x_train[:5000])).max())
        print(f"onnxruntime {ort.__version__}: output shape {y_onnx.shape}, "
              f"max |onnx - sklearn| = {diff:.3g}, max score diff = {sdiff:.3g}")
        assert y_onnx.shape == (len(xv), WINDOW)
        assert diff < 1e-4, diff

    # Detection checks.
    fail = scenario(model, threshold, FAIL_SEED, "compressor")
    door = scenario(model, threshold, DOOR_SEED, "door")
    for label, res in (("compressor failure (+8 degC / 60 min)", fail),
                       ("door left open 20 min", door)):
        crossed = [r[0] for r in res if r[0] is not None]
        peaks = np.array([r[1] for r in res])
        pre = sum(r[2] for r in res)
        line = f"{label}: detected {len(crossed)}/{len(res)}"
        if crossed:
            c = np.array(crossed) * PERIOD_S / 60.0
            line += (f"; minutes to cross: min {c.min():.1f} median {np.median(c):.1f} "
                     f"max {c.max():.1f}")
        line += (f"; peak score min {peaks.min():.4g} median {np.median(peaks):.4g} "
                 f"max {peaks.max():.4g} (threshold {threshold:.4g}); "
                 f"false alarms before onset: {pre}")
        print(line)

    manifest = f'''name = "{NAME}"
version = "1.0.0"
task = "sensor_anomaly"
description = "Dense autoencoder (20-6-20, tanh; sklearn MLPRegressor via skl2onnx) over windows of 20 cold-chain temperature readings taken every 30 s. Features: baseline B = EMA of temperature in f64 with alpha = 1/720, B_0 = t_0 (first reading), B_j = B_(j-1) + alpha*(t_j - B_(j-1)) folded in after reading j when |t_j - B_(j-1)| <= baseline_gate (else B_j = B_(j-1)). For the window ending at 0-based reading k, x_i = (t_(k-19+i) - B_(k-20)) / 2.0 for i = 0..19 (oldest first), i.e. the baseline as it stood before reading k-19 was folded in (after folding in reading k-20); computed in f64, cast to f32. Only windows with k >= 79 are scored (warm-up: the baseline used has folded in at least 60 readings). Score = mean over the 20 features of (x_i - y_i)^2, y = model output; anomaly when score > threshold. Trained by models/{NAME}/train.py on simulated normal data."
file = "{ONNX_FILE}"
sha256 = "{sha}"
licence = "Apache-2.0 (trained by this project)"
[[inputs]]
name = "{in_name}"
shape = [-1, {WINDOW}]
dtype = "f32"
[[outputs]]
name = "{out_name}"
shape = [-1, {WINDOW}]
dtype = "f32"
[sensor]
metric = "temperature_c"
window = {WINDOW}
baseline_alpha = 0.0013888888888888889   # 1/720
baseline_gate = {GATE!r}   # degC; readings further from the baseline are not folded in
scale = {SCALE!r}
warmup = {FIRST_SCORED + 1}   # readings before the first scored window
score = "mse"
threshold = {threshold!r}
'''
    with open(os.path.join(HERE, "manifest.toml"), "w") as f:
        f.write(manifest)
    print(f"wrote {os.path.join(HERE, 'manifest.toml')}")


if __name__ == "__main__":
    main()
