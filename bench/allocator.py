"""What glibc's allocator settings and the channels-last layout do to a model on a CPU.

    .venv/bin/python bench/allocator.py [--model FILE] [--windows 512 768 1024]
        [--seconds 12] [--tag NAME]

Every case runs in a fresh process (the allocator is set at a process's start), one after the
other:

- *forward*: window pixels per second of the model alone on random windows in memory, one
  window a batch, two at once on half of torch's threads each (as detect runs a CPU), with the
  page faults per window pixel and the process's peak memory;
- *train step*: samples per second of forward + backward + AdamW step of ``train``'s default
  network (random weights, batch 8 of 256-px tiles, three classes).

Each with glibc's default allocator (``FOOTPRINT_ALLOCATOR=glibc``) or the engine's
(:func:`engine.heap.tune_allocator`: one arena, no mmap threshold), and with the model and
its input in the standard layout or in channels-last. Appends a record to
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.accuracy import _hardware, append_record  # noqa: E402


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def forward_case(model_file: str, window: int, layout: str, seconds: float) -> dict[str, Any]:
    """The forward case in this process (see the module's docstring)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from engine.inference.sizing import model_threads
    from engine.models.modelfile import load_model

    model, spec = load_model(model_file, device="cpu")
    model.eval()
    fmt = torch.channels_last if layout == "channels-last" else torch.contiguous_format
    model.to(memory_format=fmt)
    x = torch.randn(1, spec.in_channels, window, window).contiguous(memory_format=fmt)
    streams = min(2, torch.get_num_threads())  # as prediction_streams gives a CPU

    def loop(until: float) -> int:
        done = 0
        with torch.inference_mode():
            while done == 0 or time.monotonic() < until:
                torch.sigmoid(model(x))
                done += 1
        return done

    with model_threads(streams), ThreadPoolExecutor(streams) as pool:
        list(pool.map(loop, [0.0] * streams))  # warm-up: one window each
        faults, start = _faults(), time.monotonic()
        done = sum(pool.map(loop, [start + seconds] * streams))
        elapsed = time.monotonic() - start
    pixels = done * window * window
    return {
        "mpx_per_s": pixels / elapsed / 1e6,
        "fault_bytes_per_px": (_faults() - faults) * os.sysconf("SC_PAGE_SIZE") / pixels,
        "peak_mib": _peak_mib(),
        "streams": streams,
    }


def train_case(layout: str, seconds: float) -> dict[str, Any]:
    """The train-step case in this process (see the module's docstring)."""
    import torch

    from engine.config import TrainConfig
    from engine.models.registry import create_model

    defaults = TrainConfig(rasters=("-",), labels=("-",), output="-")
    torch.manual_seed(0)
    model = create_model(defaults.architecture, defaults.encoder, 3, 3)
    fmt = torch.channels_last if layout == "channels-last" else torch.contiguous_format
    model.to(memory_format=fmt).train()
    batch, tile = defaults.batch_size, defaults.tile_size
    x = torch.randn(batch, 3, tile, tile).contiguous(memory_format=fmt)
    y = (torch.rand(batch, 3, tile, tile) > 0.5).float()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)

    def step() -> None:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    steps, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        step()
        steps += 1
    return {
        "samples_per_s": steps * batch / (time.monotonic() - start),
        "peak_mib": _peak_mib(),
        "batch": batch,
        "tile": tile,
    }


def _run_case(allocator: str, args: list[str]) -> dict[str, Any]:
    env = dict(os.environ)
    if allocator == "glibc":
        env["FOOTPRINT_ALLOCATOR"] = "glibc"
    done = subprocess.run(
        [sys.executable, __file__, "--case", allocator, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _case_main(argv: list[str]) -> int:
    """``--case ALLOCATOR forward MODEL WINDOW LAYOUT SECONDS`` or ``... train LAYOUT SECONDS``."""
    from engine.heap import tune_allocator

    allocator, kind, *rest = argv
    took = bool(tune_allocator())
    if took != (allocator == "engine"):
        raise SystemExit(f"allocator {allocator}: tune_allocator() returned {took}")
    if kind == "forward":
        model, window, layout, seconds = rest
        result = forward_case(model, int(window), layout, float(seconds))
    else:
        layout, seconds = rest
        result = train_case(layout, float(seconds))
    print(json.dumps(result))
    return 0


def main() -> int:
    """Command line entry point."""
    if sys.argv[1:2] == ["--case"]:
        return _case_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="/tmp/ft/s-sw3.pt", help="a model file (detect's)")
    parser.add_argument("--windows", type=int, nargs="+", default=[512, 768, 1024])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()
    cases = [
        ("glibc", "standard"),
        ("engine", "standard"),
        ("glibc", "channels-last"),
        ("engine", "channels-last"),
    ]
    rows = ["| allocator | layout | " + " | ".join(f"{w} px" for w in args.windows)
            + " | train step (samples/s) |", "| --- | --- | "
            + " | ".join("---" for _ in args.windows) + " | --- |"]  # fmt: skip
    for alloc, layout in cases:
        cells = []
        for window in args.windows:
            r = _run_case(alloc, ["forward", args.model, str(window), layout, str(args.seconds)])
            cells.append(
                f"{r['mpx_per_s']:.3f} Mpx/s, {r['fault_bytes_per_px']:.0f} B/px faulted,"
                f" {r['peak_mib']:.0f} MiB"
            )
            print(alloc, layout, window, json.dumps(r), flush=True)
        t = _run_case(alloc, ["train", layout, str(args.seconds * 2)])
        print(alloc, layout, "train", json.dumps(t), flush=True)
        cells.append(f"{t['samples_per_s']:.2f} ({t['peak_mib']:.0f} MiB)")
        rows.append(f"| {alloc} | {layout} | " + " | ".join(cells) + " |")
    command = " ".join(["python", "bench/allocator.py", *sys.argv[1:]])
    append_record(
        "\n".join(
            [
                f"### allocator: {args.tag} ({time.strftime('%Y-%m-%d')})",
                "",
                f"- command: `{command}`",
                f"- hardware: {_hardware()}",
                f"- forward: model {Path(args.model).name}, one window a batch, two at once on"
                " half of torch's threads each; window pixels per second, bytes of page"
                " faults per window pixel, peak memory of the process",
                "- train step: train's default network, random weights, batch and tile of"
                " train's defaults, forward + backward + AdamW step",
                "",
                *rows,
                "",
            ]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
