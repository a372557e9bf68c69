"""GPU cost of one Gatys Adam iteration: the project's JAX step beside the PyTorch reference.

Runs nst_core.jax_step.JaxAdamStepper (Keras 3 on JAX, the project's own VGG19 feature model
and losses) and the PyTorch reference step of shared/bench/torch_reference_gpu.py (copied
below: the reference runs its whole plan at import) at 512x512, 1280x720 (batch 1 and 4) and
1920x1080, in float32 and bf16. Weights are random (He-normal, written to a temporary .npz
that nst_core.weights loads through its explicit-path route): the real cache is 80 MB, too
big to travel, and the cost of an iteration does not depend on weight values.

Reports ms per iteration and per frame-iteration, and MFU: counted VGG19 conv FLOPs to
relu5_1 (forward + backward to the input, as the reference counts; Grams, losses and Adam
left out) over time, against the 790 TFLOP/s dense bf16 rate measured on these cards.
Configurations run in priority order under a wall-clock budget; the rest are recorded as
skipped. Writes <out>/gpu.json and prints a table last.

Memory: each JAX row records the device's `peak_bytes_in_use` (jax memory_stats) after the
configuration. JAX cannot reset that peak, so it is cumulative over the process: a row's
`peak_gib` is set only where the peak rose during that configuration (then the peak is that
configuration's own); `jax_peak_gib_cumulative` is always recorded. `--order size` runs the
JAX configurations from the fewest pixels to the most, so that every row gets its own peak
(the torch rows reset theirs). On a CPU (--smoke) memory_stats may be None: recorded as null.

    python benchmarks/gpu/run_gpu_bench.py --out "$OUT"        # on the GPU machine
    python benchmarks/gpu/run_gpu_bench.py --smoke --out /tmp  # CPU, tiny sizes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave memory for PyTorch
if "nst_video" not in sys.modules:  # the device machine runs the checkout, not an install
    sys.modules["nst_video"] = types.ModuleType("nst_video")
    sys.modules["nst_video"].__path__ = [str(Path(__file__).resolve().parents[2])]

import numpy as np  # noqa: E402

PEAK_BF16_TFLOPS = 790.0
COMPILE_RESERVE_S = 90.0
CONTENT_LAYER = "block4_conv2"
STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
# VGG19 convolutions up to block5_conv1: (block, C_in, C_out); block k runs at 1/2**(k-1).
CONVS = (
    (1, 3, 64), (1, 64, 64),
    (2, 64, 128), (2, 128, 128),
    (3, 128, 256), (3, 256, 256), (3, 256, 256), (3, 256, 256),
    (4, 256, 512), (4, 512, 512), (4, 512, 512), (4, 512, 512),
    (5, 512, 512),
)  # fmt: skip


@dataclass(frozen=True)
class Config:
    """One measurement: framework, size, batch and precision mode."""

    framework: str  # "jax" or "torch"
    height: int
    width: int
    batch: int
    mode: str  # jax: fp32 | bf16 | bf16_gram16; torch: fp32 | bf16_cl | bf16_cl_compile


def conv_flops(height: int, width: int, batch: int = 1) -> float:
    """VGG19 conv FLOPs to relu5_1, forward + backward to the input (2 x forward)."""
    total = 0.0
    for block, c_in, c_out in CONVS:
        h, w = height, width
        for _ in range(block - 1):  # 2x2 max pools, floor like 'valid' pooling
            h, w = h // 2, w // 2
        total += 2.0 * h * w * 9 * c_in * c_out
    return 2.0 * total * batch


def plan(smoke: bool) -> list[Config]:
    """Configurations in priority order (the 720p bf16 target first)."""
    if smoke:
        modes = ("bf16", "fp32", "bf16_gram16")
        return [Config("jax", 48, 80, 2, mode) for mode in modes]
    jax_order = [
        (720, 1280, 4, "bf16"),
        (720, 1280, 1, "bf16"),
        (512, 512, 1, "bf16"),
        (1080, 1920, 1, "bf16"),
        (720, 1280, 1, "fp32"),
        (512, 512, 1, "fp32"),
        (720, 1280, 4, "fp32"),
        (1080, 1920, 1, "fp32"),
        (720, 1280, 4, "bf16_gram16"),
    ]
    configs: list[Config] = []
    for h, w, b, mode in jax_order:
        configs.append(Config("jax", h, w, b, mode))
        if mode != "bf16_gram16":
            configs.append(Config("torch", h, w, b, "bf16_cl" if mode == "bf16" else "fp32"))
    configs.append(Config("torch", 720, 1280, 4, "bf16_cl_compile"))
    return configs


# --- JAX: the project's step ---------------------------------------------------------------


def random_weights_file(directory: Path, seed: int = 0) -> Path:
    """He-normal VGG19 weights in nst_core's .npz layout (<layer>/kernel, <layer>/bias)."""
    from nst_video.nst_core.weights import VGG19_CONV_CHANNELS

    rng = np.random.default_rng(seed)
    arrays = {}
    for name, (c_in, c_out) in VGG19_CONV_CHANNELS.items():
        std = np.sqrt(2.0 / (9 * c_in))
        arrays[f"{name}/kernel"] = (rng.standard_normal((3, 3, c_in, c_out)) * std).astype("f4")
        arrays[f"{name}/bias"] = np.zeros(c_out, "f4")
    path = directory / "vgg19_random.npz"
    np.savez(path, **arrays)
    return path


class JaxBench:
    """Builds the project's feature model once and times JaxAdamStepper per configuration."""

    def __init__(self, weights_path: Path) -> None:
        from nst_video.nst_core.losses import LossWeights
        from nst_video.nst_core.model import feature_model
        from nst_video.nst_core.weights import resolve_weights

        info = resolve_weights(weights_path)
        self.model = feature_model((CONTENT_LAYER, *STYLE_LAYERS), "max", info)
        self.weights = LossWeights(1.0, 5.0, 0.1, (1.0,) * len(STYLE_LAYERS))
        self.steppers: dict[str, object] = {}

    def stepper(self, mode: str):
        """One stepper per mode (it owns the jitted functions, so compiles are reused)."""
        from nst_video.nst_core.jax_step import JaxAdamStepper
        from nst_video.nst_core.stepper import AdamConfig

        if mode not in self.steppers:
            dtype = "float32" if mode == "fp32" else "bfloat16"
            precision = {"fp32": "float32", "bf16": "tensorfloat32", "bf16_gram16": "bfloat16"}
            self.steppers[mode] = JaxAdamStepper(
                self.model,
                1,
                self.weights,
                AdamConfig(),
                compute_dtype=dtype,
                precision=precision[mode],
            )
        return self.steppers[mode]

    def run(self, cfg: Config, chunk: int, calls: int) -> dict:
        """Compile, warm up, then time `calls` x `chunk` scanned steps (host clock + sync)."""
        import jax

        from nst_video.nst_core.jax_step import JaxAdamState

        stepper = self.stepper(cfg.mode)
        rng = np.random.default_rng(1)
        content = rng.random((cfg.batch, cfg.height, cfg.width, 3), dtype=np.float32)
        targets = stepper.targets(content, content[:1])
        memory_before = device_memory()
        image = jax.numpy.asarray(content)
        state = JaxAdamState.zeros(content.shape)
        start = time.perf_counter()
        image, state, terms = stepper.steps(image, state, targets, chunk)
        jax.block_until_ready(terms)
        compile_s = time.perf_counter() - start
        image, state, terms = stepper.steps(image, state, targets, chunk)
        jax.block_until_ready(terms)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            image, state, terms = stepper.steps(image, state, targets, chunk)
            jax.block_until_ready(terms)
            times.append((time.perf_counter() - start) * 1e3 / chunk)
        losses = np.asarray(terms)[:, :, 0].mean(axis=1)
        return {
            "ms_per_iter": float(np.median(times)),
            "ms_spread": [min(times), max(times)],
            "compile_s": round(compile_s, 1),
            "loss_first_last": [float(losses[0]), float(losses[-1])],
            "finite": bool(np.isfinite(losses).all()),
            **memory_fields(memory_before, device_memory()),
        }


def device_memory() -> dict | None:
    """JAX's memory_stats of the first device (None where the backend has none, e.g. CPU)."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - some backends raise instead of returning None
        return None
    return dict(stats) if stats else None


def memory_fields(before: dict | None, after: dict | None) -> dict:
    """Peak device memory of one configuration, as far as a non-resettable peak tells."""
    if not after or "peak_bytes_in_use" not in after:
        return {"jax_peak_gib_cumulative": None, "peak_gib": None}
    peak = after["peak_bytes_in_use"]
    earlier = (before or {}).get("peak_bytes_in_use", 0)
    rose = peak > earlier
    return {
        "jax_peak_gib_cumulative": round(peak / 2**30, 3),
        "jax_peak_rose": rose,
        # Only where the peak rose is it this configuration's own (it cannot be reset).
        "peak_gib": round(peak / 2**30, 3) if rose else None,
        "jax_bytes_in_use_before_gib": round((before or {}).get("bytes_in_use", 0) / 2**30, 3),
        "jax_bytes_limit_gib": round(after.get("bytes_limit", 0) / 2**30, 3) or None,
    }


# --- PyTorch: the reference step (shared/bench/torch_reference_gpu.py) -----------------------


class TorchBench:
    """The reference: VGG19 features[:30], relu4_2 content, relu1_1..5_1 Grams, TV, Adam."""

    STYLE = {1, 6, 11, 20, 29}
    CONTENT = 22

    def __init__(self) -> None:
        import torch
        import torchvision

        self.torch = torch
        torch.manual_seed(0)
        self.feats = torchvision.models.vgg19(weights=None).features[:30].to("cuda").eval()
        for p in self.feats.parameters():
            p.requires_grad_(False)

    def _extract(self, net, x) -> dict:
        outs = {}
        for i, layer in enumerate(net):
            x = layer(x)
            if i in self.STYLE or i == self.CONTENT:
                outs[i] = x
        return outs

    def _gram(self, f):
        b, c, h, w = f.shape
        f = f.reshape(b, c, h * w)
        return self.torch.bmm(f, f.transpose(1, 2)) / (c * h * w)

    def _make_step(self, net, content, style_grams, img, opt, amp):
        torch = self.torch

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                o = self._extract(net, img)
                loss = 1e4 * torch.mean((o[self.CONTENT].float() - content) ** 2)
                for i in self.STYLE:
                    g = self._gram(o[i].float())
                    loss = loss + 1e-2 * torch.mean((g - style_grams[i]) ** 2)
                dy = img[:, :, 1:, :] - img[:, :, :-1, :]
                dx = img[:, :, :, 1:] - img[:, :, :, :-1]
                loss = loss + 30 * (torch.mean(dy**2) + torch.mean(dx**2))
            loss.backward()
            opt.step()
            return loss

        return step

    def run(self, cfg: Config, iters: int = 30) -> dict:
        """The reference's bench(): 5 warm-ups, `iters` timed with CUDA events."""
        torch = self.torch
        from torch.utils.flop_counter import FlopCounterMode

        amp = cfg.mode.startswith("bf16")
        torch.backends.cudnn.allow_tf32 = cfg.mode != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = cfg.mode != "fp32"
        fmt = torch.channels_last if "cl" in cfg.mode else torch.contiguous_format
        net = self.feats.to(memory_format=fmt)
        x = torch.rand(cfg.batch, 3, cfg.height, cfg.width, device="cuda").to(memory_format=fmt)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            o = self._extract(net, x)
            content = o[self.CONTENT].float()
            grams = {i: self._gram(o[i].float()) for i in self.STYLE}
        img = x.clone().requires_grad_(True)
        opt = torch.optim.Adam([img], lr=0.02)
        step = self._make_step(net, content, grams, img, opt, amp)
        if "compile" in cfg.mode:
            step = torch.compile(step)
        start = time.perf_counter()
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        warm_s = time.perf_counter() - start
        with FlopCounterMode(display=False) as counter:
            self._make_step(net, content, grams, img, opt, amp)()
        t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0.record()
        for _ in range(iters):
            step()
        t1.record()
        torch.cuda.synchronize()
        ms = t0.elapsed_time(t1) / iters
        peak = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.empty_cache()
        return {
            "ms_per_iter": ms,
            "warmup_s": round(warm_s, 1),
            "peak_gib": round(peak, 2),
            "torch_counted_tflop": round(counter.get_total_flops() / 1e12, 4),
        }


# --- driver ---------------------------------------------------------------------------------


def _version(module: str) -> str | None:
    """A module's version, or why it did not import."""
    try:
        return __import__(module).__version__
    except Exception as error:  # noqa: BLE001 - reported, not fatal
        return f"unavailable: {type(error).__name__}: {str(error)[:200]}"


def device_info() -> dict:
    """Which card, which versions."""
    info = {"python": platform.python_version()}
    info |= {name: _version(name) for name in ("jax", "keras", "torch")}
    try:
        import jax

        info["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception as error:  # noqa: BLE001
        info["jax_devices"] = repr(error)[:200]
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        pass
    return info


def _row(cfg: Config) -> dict:
    return {
        "framework": cfg.framework,
        "h": cfg.height,
        "w": cfg.width,
        "batch": cfg.batch,
        "mode": cfg.mode,
    }


def parse_config(text: str) -> Config:
    """'jax:1280x720:4:bf16' -> Config('jax', 720, 1280, 4, 'bf16')."""
    framework, size, batch, mode = text.split(":")
    width, height = (int(v) for v in size.split("x"))
    return Config(framework, height, width, int(batch), mode)


def by_size(configs: list[Config]) -> list[Config]:
    """JAX configurations sorted by pixels per call (stable), then the others as planned."""
    jax_configs = [c for c in configs if c.framework == "jax"]
    jax_configs.sort(key=lambda c: c.height * c.width * c.batch)
    return jax_configs + [c for c in configs if c.framework != "jax"]


def make_benches(smoke: bool, frameworks: set[str]) -> dict:
    """The JAX and (on a GPU) PyTorch benches; one that cannot start is stored as its error."""
    benches: dict = {}
    if "jax" not in frameworks:
        benches["jax"] = "not requested"
    else:
        benches["jax"] = _jax_bench()
    if not smoke and "torch" in frameworks:
        try:
            benches["torch"] = TorchBench()
        except Exception as error:  # noqa: BLE001
            traceback.print_exc()
            benches["torch"] = f"{type(error).__name__}: {str(error)[:300]}"
    return benches


def _jax_bench() -> JaxBench | str:
    """The JAX bench, or why it could not start (the torch numbers are still worth having)."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return JaxBench(random_weights_file(Path(tmp)))
    except Exception as error:  # noqa: BLE001
        traceback.print_exc()
        return f"{type(error).__name__}: {str(error)[:300]}"


def measure(cfg: Config, benches: dict, smoke: bool) -> dict:
    """Run one configuration; errors are recorded, not raised."""
    row = _row(cfg)
    bench = benches.get(cfg.framework, "not available here")
    if isinstance(bench, str):
        return row | {"error": bench}
    try:
        if cfg.framework == "jax":
            row |= bench.run(cfg, chunk=2 if smoke else 10, calls=2 if smoke else 3)
        else:
            row |= bench.run(cfg)
    except Exception as error:  # noqa: BLE001 - one failed configuration must not end the run
        row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
        traceback.print_exc()
        return row
    flops = conv_flops(cfg.height, cfg.width, cfg.batch)
    row["ms_per_frame_iter"] = row["ms_per_iter"] / cfg.batch
    row["conv_tflop_per_iter"] = flops / 1e12
    row["tflops"] = flops / row["ms_per_iter"] / 1e9
    row["mfu_bf16_peak"] = row["tflops"] / PEAK_BF16_TFLOPS
    return row


def print_table(rows: list[dict]) -> None:
    """The summary, last in the output."""
    print(
        f"\n{'fw':5} {'size':>9} {'B':>2} {'mode':16} {'ms/iter':>8} {'ms/frame':>8} "
        f"{'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>8}"
    )
    for r in rows:
        size = f"{r['w']}x{r['h']}"
        if "ms_per_iter" not in r:
            why = r.get("error") or r.get("skipped")
            print(f"{r['framework']:5} {size:>9} {r['batch']:>2} {r['mode']:16} {why}")
            continue
        print(
            f"{r['framework']:5} {size:>9} {r['batch']:>2} {r['mode']:16} "
            f"{r['ms_per_iter']:8.2f} {r['ms_per_frame_iter']:8.2f} {r['tflops']:8.1f} "
            f"{r['mfu_bf16_peak']:6.3f} {_gib(r.get('peak_gib'))}"
        )


def _gib(value: float | None) -> str:
    return f"{value:8.2f}" if value is not None else f"{'-':>8}"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the plan under the budget, write gpu.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, JAX only, CPU is fine")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=260.0,
        help="start no new configuration after this many seconds",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="FW:WxH:B:MODE",
        help="run just these configurations, e.g. jax:1280x720:4:bf16 torch:1280x720:4:bf16_cl",
    )
    parser.add_argument(
        "--order",
        choices=("priority", "size"),
        default="priority",
        help="size: JAX configurations from the fewest pixels up, so each row's JAX peak "
        "memory is its own (JAX's peak cannot be reset)",
    )
    args = parser.parse_args(argv)
    began = time.perf_counter()
    info = device_info()
    print(json.dumps(info), flush=True)
    configs = [parse_config(text) for text in args.only] if args.only else plan(args.smoke)
    if args.order == "size":
        configs = by_size(configs)
    benches = make_benches(args.smoke, {cfg.framework for cfg in configs})
    rows = []
    for cfg in configs:
        elapsed = time.perf_counter() - began
        # torch.compile needs about a minute of compiling: start it only with that to spare.
        reserve = COMPILE_RESERVE_S if cfg.mode.endswith("compile") else 0.0
        if elapsed > args.budget_s - reserve:
            row = _row(cfg) | {"skipped": f"budget at {elapsed:.0f}s"}
        else:
            row = measure(cfg, benches, args.smoke)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "what": "ms per Gatys Adam iteration, project JAX step vs PyTorch reference",
        "weights": "random (He-normal); timing does not depend on values",
        "flops": "VGG19 conv to relu5_1, forward + backward-to-input; MFU vs 790 TFLOP/s bf16",
        "timing": "jax: host clock around 10-step jitted scans after sync, median of 3; "
        "torch: CUDA events over 30 steps after 5 warm-ups",
        "memory": "peak_gib: torch max_memory_allocated (reset per row); jax "
        "peak_bytes_in_use, cumulative over the process, given as peak_gib only where it "
        "rose during the row (--order size makes every JAX row rise)",
        "order": args.order,
        "device": info,
        "seconds": round(time.perf_counter() - began, 1),
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=1))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
