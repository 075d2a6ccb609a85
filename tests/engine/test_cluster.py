"""Detection and prediction on a local Dask cluster: the same result as one process, faults,
cancel, a scheduler that cannot be reached, plain schedulers of other machines refused, TLS,
bounded work in flight, models rewritten in place, engine versions that differ."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import psutil
import pytest
import rasterio
import shapely
import torch

import engine
import engine.cluster as cluster_module
from engine.config import DetectConfig, InferenceOptions, PredictConfig, TrainConfig
from engine.detect import detect
from engine.errors import CancelledError, ConfigError, ModelFileError
from engine.events import NullProgress, RecordingProgress
from engine.models.modelfile import load_model, save_model
from engine.predict import predict
from engine.train import train
from tests.engine import fuzz
from tests.engine.fuzz import CRS, ORIGIN
from tests.engine.test_torchrun import _scene

HEIGHT, WIDTH = 1400, 300  # two strips of 1024 rows; buildings cut by strip and block edges


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A quickly trained separation model and a tall raster of roofs."""
    folder = tmp_path_factory.mktemp("cluster")
    raster, labels = _scene(folder)
    model = folder / "model.pt"
    config = TrainConfig(
        rasters=(str(raster),), labels=(str(labels),), output=str(model),
        architecture="compact", encoder="none", tile_size=32, epochs=3, batch_size=4,
        lr=0.01, device="cpu",
    )  # fmt: skip
    train(config, NullProgress())
    with rasterio.open(raster) as src:
        image = src.read()
    tall = folder / "tall.tif"
    reps = (1, -(-HEIGHT // image.shape[1]), -(-WIDTH // image.shape[2]))
    data = np.tile(image, reps)[:, :HEIGHT, :WIDTH]
    with rasterio.open(
        tall, "w", driver="GTiff", width=WIDTH, height=HEIGHT, count=3, dtype="uint8", crs=CRS,
        transform=ORIGIN,
    ) as dst:  # fmt: skip
        dst.write(data)
    return tall, model


def _run(raster: Path, model: Path, out: Path, progress: Any = None, **kw: Any) -> Any:
    config = DetectConfig(
        raster=str(raster), model=str(model), output=str(out),
        keep_probability=str(out.with_suffix(".tif")), **kw,
    )  # fmt: skip
    return detect(config, progress or NullProgress())


def _polygons(path: Path) -> np.ndarray:
    frame = gpd.read_file(path)
    return np.array(sorted(shapely.to_wkb(shapely.normalize(frame.geometry.values))), object)


def _worker_processes() -> list[psutil.Process]:
    """Dask's worker processes (spawned; not multiprocessing's resource tracker)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:  # gone meanwhile
            continue
    return found


def test_two_local_workers_give_what_one_process_gives(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    raster, model = inputs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: the same arithmetic
    try:
        one = _run(raster, model, tmp_path / "one.gpkg")
    finally:
        torch.set_num_threads(threads)
    two = _run(raster, model, tmp_path / "two.gpkg", dask_workers=2)
    assert one["buildings"] == two["buildings"] > 10
    assert two["windows"] >= one["windows"]  # strips also predict their halo rows' windows
    a, b = _polygons(tmp_path / "one.gpkg"), _polygons(tmp_path / "two.gpkg")
    assert (a == b).all()
    with rasterio.open(tmp_path / "one.tif") as p1, rasterio.open(tmp_path / "two.tif") as p2:
        np.testing.assert_allclose(p1.read(), p2.read(), atol=1e-5)
    assert not _worker_processes()  # the local cluster is gone


def test_workers_run_an_exported_model_on_onnx_runtime(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dask workers open the .onnx model on ONNX Runtime as the client does: the same
    buildings as one process running it."""
    from engine.config import ExportConfig
    from engine.export import export

    raster, model = inputs
    onnx = tmp_path / "model.onnx"
    export(ExportConfig(model=str(model), output=str(onnx)), NullProgress())
    with monkeypatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # the workers' thread count: the same arithmetic
        one = _run(raster, onnx, tmp_path / "one.gpkg")
    two = _run(raster, onnx, tmp_path / "two.gpkg", dask_workers=2)
    assert one["runtime"] == "onnx" and one["buildings"] == two["buildings"] > 10
    assert (_polygons(tmp_path / "one.gpkg") == _polygons(tmp_path / "two.gpkg")).all()


def test_predict_on_two_workers(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    raster, model = inputs
    one = tmp_path / "one.tif"
    predict(PredictConfig(str(raster), str(model), str(one)), NullProgress())
    two = tmp_path / "two.tif"
    result = predict(
        PredictConfig(str(raster), str(model), str(two), dask_workers=2), NullProgress()
    )
    assert result["windows_total"] >= result["windows"] > 0  # counted over the strips
    with rasterio.open(one) as p1, rasterio.open(two) as p2:
        np.testing.assert_allclose(p1.read(), p2.read(), atol=1e-5)


class KillsAWorker(RecordingProgress):
    """Kills one worker process (SIGKILL) as soon as the first strip is done."""

    def __init__(self) -> None:
        super().__init__()
        self.killed: list[int] = []

    def set_progress(self, percent: float) -> None:
        super().set_progress(percent)
        workers = _worker_processes()
        if not self.killed and percent > 0 and workers:
            victim = workers[-1]
            self.killed.append(victim.pid)
            os.kill(victim.pid, signal.SIGKILL)


def test_a_killed_worker_has_its_tasks_rerun(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    raster, model = inputs
    reference = _run(raster, model, tmp_path / "ref.gpkg", dask_workers=2)
    progress = KillsAWorker()
    result = _run(raster, model, tmp_path / "killed.gpkg", progress, dask_workers=2)
    assert progress.killed, "no worker was killed"
    assert result["buildings"] == reference["buildings"]
    assert (_polygons(tmp_path / "ref.gpkg") == _polygons(tmp_path / "killed.gpkg")).all()


def test_cancel_stops_the_workers_and_leaves_nothing(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    raster, model = inputs
    before = set(tmp_path.iterdir())
    start = time.monotonic()
    with pytest.raises(CancelledError):
        _run(raster, model, tmp_path / "b.gpkg", RecordingProgress(cancel_after=2), dask_workers=2)
    assert time.monotonic() - start < 60
    assert set(tmp_path.iterdir()) == before
    deadline = time.monotonic() + 10
    while _worker_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _worker_processes()


def test_an_unreachable_scheduler_is_a_clear_error(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raster, model = inputs
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 2)
    with pytest.raises(ConfigError, match="Cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        _run(raster, model, tmp_path / "b.gpkg", scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "b.gpkg").exists()


def test_a_server_that_is_no_scheduler_is_a_clear_error(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An HTTP server at the address (seen: a proxy answering every port) is no internal error."""
    import socketserver
    import threading

    class NotDask(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(b"HTTP/1.1 404 Not Found\r\nserver: keryx\r\n\r\n" * 64)

    raster, model = inputs
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 2)
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), NotDask) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        address = f"tcp://127.0.0.1:{server.server_address[1]}"
        try:
            with pytest.raises(ConfigError, match=f"Cannot reach the Dask scheduler at {address}"):
                _run(raster, model, tmp_path / "b.gpkg", scheduler=address)
        finally:
            server.shutdown()
    assert not list(tmp_path.iterdir())


def test_cancel_on_a_shared_cluster_cancels_only_the_jobs_tasks(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    """On a cluster given by its scheduler address, cancel releases the job's tasks and leaves
    the cluster running for others."""
    from distributed import Client, LocalCluster

    raster, model = inputs
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        with pytest.raises(CancelledError):
            _run(raster, model, tmp_path / "b.gpkg", RecordingProgress(cancel_after=2),
                 scheduler=cluster.scheduler_address)  # fmt: skip
        deadline = time.monotonic() + 20

        def tasks(dask_scheduler: Any) -> int:
            return len(dask_scheduler.tasks)

        while client.run_on_scheduler(tasks) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.run_on_scheduler(tasks) == 0
        assert client.submit(sum, [1, 2]).result() == 3  # still serving others
    assert not (tmp_path / "b.gpkg").exists()


# ------------------------------------------------------------------ who may be the scheduler


@pytest.mark.parametrize(
    "address",
    [
        "tcp://203.0.113.5:8786",
        "203.0.113.5:8786",
        "ws://203.0.113.5:8786",
        "tcp://[2001:db8::1]:1",
    ],
)
def test_a_plain_scheduler_of_another_machine_is_refused(address: str) -> None:
    options = InferenceOptions(scheduler=address)
    with pytest.raises(ConfigError, match="Refusing the unencrypted.*--scheduler-insecure"):
        cluster_module.scheduler_security(options)
    insecure = replace(options, scheduler_insecure=True)  # the user's explicit opt-in
    assert cluster_module.scheduler_security(insecure) is None


def test_a_host_name_is_refused_unless_all_its_addresses_are_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = {"inside": ["127.0.0.1", "::1"], "outside": ["127.0.0.1", "192.0.2.7"]}

    def resolve(host: str, *args: Any, **kw: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 0)) for ip in table[host]]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert cluster_module.scheduler_security(InferenceOptions(scheduler="inside:8786")) is None
    with pytest.raises(ConfigError, match="Refusing"):
        cluster_module.scheduler_security(InferenceOptions(scheduler="tcp://outside:8786"))
    with pytest.raises(ConfigError, match="Cannot resolve the Dask scheduler's host 'nowhere'"):
        cluster_module.scheduler_security(InferenceOptions(scheduler="tcp://nowhere:8786"))


@pytest.mark.parametrize(
    "address", ["tcp://127.0.0.1:8786", "127.0.0.2:8786", "localhost:8786", "tcp://[::1]:8786"]
)
def test_a_plain_scheduler_on_this_machine_is_accepted(address: str) -> None:
    assert cluster_module.scheduler_security(InferenceOptions(scheduler=address)) is None


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("nonsense", "'nonsense' is not a Dask scheduler address .*missing port"),
        ("tls://", "'tls://' is not a Dask scheduler address"),
        ("tcp://:8786", "'tcp://:8786' names no host"),
    ],
)
def test_a_malformed_scheduler_address_is_a_clear_error(address: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cluster_module.scheduler_security(InferenceOptions(scheduler=address))


def test_a_refused_scheduler_leaves_no_output(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    raster, model = inputs
    with pytest.raises(ConfigError, match="Refusing the unencrypted scheduler address"):
        _run(raster, model, tmp_path / "b.gpkg", scheduler="tcp://203.0.113.5:8786")
    assert not list(tmp_path.iterdir())


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _authority(folder: Path, name: str) -> dict[str, Path]:
    """A CA and two certificates it signs (``node``: scheduler and worker; ``client``), EC keys."""
    folder.mkdir()
    made = {"ca": folder / "ca.pem"}
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *key, "-keyout", folder / "ca.key", "-out", made["ca"],
             "-days", "1", "-subj", f"/CN={name} CA")  # fmt: skip
    for who in ("node", "client"):
        made[who], made[f"{who}-key"] = folder / f"{who}.pem", folder / f"{who}.key"
        _openssl("req", *key, "-keyout", made[f"{who}-key"], "-out", folder / f"{who}.csr",
                 "-subj", f"/CN={name} {who}")  # fmt: skip
        _openssl("x509", "-req", "-in", folder / f"{who}.csr", "-CA", made["ca"], "-CAkey",
                 folder / "ca.key", "-CAcreateserial", "-out", made[who], "-days", "1")  # fmt: skip
    return made


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """The cluster's CA and certificates, and another CA's (a stranger's)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make test certificates")
    folder = tmp_path_factory.mktemp("tls")
    return {"cluster": _authority(folder / "cluster", "cluster"),
            "stranger": _authority(folder / "stranger", "stranger")}  # fmt: skip


@pytest.fixture(scope="module")
def tls_scheduler(certificates: dict[str, dict[str, Path]]) -> Iterator[str]:
    """A scheduler and one worker (threads of this process) that speak TLS only, on loopback;
    they accept clients with a certificate of the cluster's CA."""
    from distributed import LocalCluster, Security

    files = {k: str(v) for k, v in certificates["cluster"].items()}
    security = Security(
        tls_ca_file=files["ca"], require_encryption=True,
        tls_scheduler_cert=files["node"], tls_scheduler_key=files["node-key"],
        tls_worker_cert=files["node"], tls_worker_key=files["node-key"],
        tls_client_cert=files["client"], tls_client_key=files["client-key"],
    )  # fmt: skip
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tls://", host="127.0.0.1",
        security=security, dashboard_address=None,
    ) as cluster:  # fmt: skip
        yield str(cluster.scheduler_address)


def _tls(certificates: dict[str, dict[str, Path]], who: str = "cluster") -> dict[str, str]:
    files = certificates[who]
    return {
        "scheduler_ca": str(certificates["cluster"]["ca"]),
        "scheduler_cert": str(files["client"]),
        "scheduler_key": str(files["client-key"]),
    }


def test_predict_on_a_tls_scheduler(
    tls_scheduler: str, certificates: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    raster, model = tmp_path / "scene.tif", tmp_path / "model.pt"
    fuzz.make_geotiff(raster)
    fuzz.make_model(model)
    assert tls_scheduler.startswith("tls://127.0.0.1:")
    one, two = tmp_path / "one.tif", tmp_path / "two.tif"
    predict(PredictConfig(str(raster), str(model), str(one)), NullProgress())
    config = PredictConfig(str(raster), str(model), str(two), scheduler=tls_scheduler,
                           **_tls(certificates))  # fmt: skip
    assert predict(config, NullProgress())["windows"] > 0
    with rasterio.open(one) as p1, rasterio.open(two) as p2:
        np.testing.assert_allclose(p1.read(), p2.read(), atol=1e-5)


def test_a_tls_scheduler_refuses_a_strangers_certificate(
    tls_scheduler: str,
    certificates: dict[str, dict[str, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raster, model = tmp_path / "scene.tif", tmp_path / "model.pt"
    fuzz.make_geotiff(raster)
    fuzz.make_model(model)
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 2)
    config = PredictConfig(str(raster), str(model), str(tmp_path / "out.tif"),
                           scheduler=tls_scheduler, **_tls(certificates, "stranger"))  # fmt: skip
    with pytest.raises(ConfigError, match="Cannot reach the Dask scheduler at tls://.*signed by"):
        predict(config, NullProgress())
    assert not (tmp_path / "out.tif").exists()


def test_tls_certificates_are_checked_before_connecting(
    certificates: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    tls = _tls(certificates)
    address = "tls://127.0.0.1:9"

    def check(**kw: Any) -> None:
        cluster_module.scheduler_security(InferenceOptions(scheduler=address, **kw))

    with pytest.raises(ConfigError, match="uses TLS.*missing: --scheduler-ca, --scheduler-cert"):
        check()
    with pytest.raises(ConfigError, match="--scheduler-ca .*nowhere.pem does not exist"):
        check(**{**tls, "scheduler_ca": str(tmp_path / "nowhere.pem")})
    with pytest.raises(ConfigError, match="--scheduler-cert .* is a folder; give the path"):
        check(**{**tls, "scheduler_cert": str(tmp_path)})
    text = tmp_path / "text.pem"
    text.write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="--scheduler-ca .*text.pem is not a PEM CA"):
        check(**{**tls, "scheduler_ca": str(text)})
    other_key = str(certificates["stranger"]["client-key"])  # not this certificate's key
    with pytest.raises(ConfigError, match="--scheduler-cert .*client.pem and --scheduler-key"):
        check(**{**tls, "scheduler_key": other_key})
    with pytest.raises(ConfigError, match="given but the scheduler address tcp://.* not tls://"):
        cluster_module.scheduler_security(InferenceOptions(scheduler="tcp://127.0.0.1:9", **tls))
    assert cluster_module.scheduler_security(InferenceOptions(scheduler=address, **tls))


# ------------------------------------------------------------ work in flight, models, versions


@pytest.fixture(scope="module")
def inproc_client() -> Iterator[Any]:
    """A client of one worker with one thread, in this process."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
        as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        yield client


def _echo(job: Any) -> Any:
    return job


def test_at_most_two_strips_per_worker_thread_are_in_flight(
    inproc_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Strips are submitted as earlier ones are taken, not all at once; results stay in order."""
    monkeypatch.setattr(cluster_module, "run_strip", _echo)
    jobs = list(range(12))
    seen, in_flight = [], []
    for result in cluster_module.strip_results(inproc_client, jobs, NullProgress()):  # type: ignore[arg-type]
        seen.append(result)
        in_flight.append(len(inproc_client.futures))  # submitted and not yet taken
    assert seen == jobs
    assert max(in_flight) <= 2 * 1  # one worker thread
    assert not inproc_client.futures


def _missing_engine(job: Any) -> Any:
    raise ModuleNotFoundError("No module named 'engine'", name="engine")


def _foreign_scheduler(job: Any) -> Any:
    raise RuntimeError("Error during deserialization of the task graph. This frequently occurs")


@pytest.mark.parametrize(
    ("fails", "message"),
    [
        (_missing_engine, "A Dask worker cannot import engine: start the scheduler and"),
        (_foreign_scheduler, "The Dask scheduler cannot read this engine's tasks: start"),
    ],
)
def test_a_cluster_without_the_engines_environment_is_a_clear_error(
    inproc_client: Any, monkeypatch: pytest.MonkeyPatch, fails: Any, message: str
) -> None:
    monkeypatch.setattr(cluster_module, "run_strip", fails)
    with pytest.raises(ConfigError, match=message):
        list(cluster_module.strip_results(inproc_client, [1, 2, 3], NullProgress()))  # type: ignore[list-item]
    assert not inproc_client.futures


def _perturbed(path: Path, other: Path) -> None:
    """Write to ``other`` the model of ``path`` with other weights."""
    model, spec = load_model(path)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.5)
    save_model(other, model, spec, overwrite=True)


def _weights(model: Any) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_a_model_rewritten_in_place_is_reloaded(tmp_path: Path) -> None:
    path, retrained = tmp_path / "model.pt", tmp_path / "retrained.pt"
    fuzz.make_model(path)
    _perturbed(path, retrained)
    options = InferenceOptions(device="cpu")
    first, _ = cluster_module._network(str(path), options, 1)
    assert cluster_module._network(str(path), options, 1)[0] is first  # cached
    before = path.stat().st_mtime_ns
    os.replace(retrained, path)  # as train writes a model: a new file under the same name
    os.utime(path, ns=(before + 10**9, before + 10**9))  # a second later
    second, _ = cluster_module._network(str(path), options, 1)
    assert second is not first
    assert not torch.equal(_weights(first.model), _weights(second.model))
    how = ("auto", "cpu", "auto", 1)
    assert [key for key in cluster_module._MODELS if key[0] == str(path)] == [
        (str(path), path.stat().st_size, path.stat().st_mtime_ns, how)
    ]  # the old version is dropped


def test_a_model_the_worker_cannot_see_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="cannot read the model file .*gone.pt"):
        cluster_module._network(str(tmp_path / "gone.pt"), InferenceOptions(), 1)


def test_a_worker_of_another_engine_version_refuses_the_strip(
    inproc_client: Any, tmp_path: Path
) -> None:
    raster, model = tmp_path / "scene.tif", tmp_path / "model.pt"
    fuzz.make_geotiff(raster)
    fuzz.make_model(model)
    options = InferenceOptions(device="cpu")
    (job,) = cluster_module.strip_jobs(str(raster), str(model), options, (fuzz.SIDE, 1024, 1))
    assert job.version == engine.__version__
    old = replace(job, version="0.0.1")
    message = f"runs Footprint engine {engine.__version__}, this client 0.0.1: install the same"
    with pytest.raises(ConfigError, match=message):
        cluster_module.run_strip(old)
    with pytest.raises(ConfigError, match=message):  # as the client sees it
        inproc_client.submit(cluster_module.run_strip, old, pure=False).result()


def test_an_extent_on_two_workers_gives_what_one_process_gives(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    """With an extent the strips are rows of its work window (rows 512 to the end here)."""
    raster, model = inputs
    (x0, y0), (x1, y1) = ORIGIN * (20, 1300), ORIGIN * (280, 600)
    extent = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = _run(raster, model, tmp_path / "one.gpkg", extent=extent)
    finally:
        torch.set_num_threads(threads)
    two = _run(raster, model, tmp_path / "two.gpkg", extent=extent, dask_workers=2)
    assert (one["width"], one["height"]) == (two["width"], two["height"]) == (WIDTH, HEIGHT - 512)
    assert one["buildings"] == two["buildings"] > 5
    assert (_polygons(tmp_path / "one.gpkg") == _polygons(tmp_path / "two.gpkg")).all()
    with rasterio.open(tmp_path / "one.tif") as p1, rasterio.open(tmp_path / "two.tif") as p2:
        assert p1.transform == p2.transform == ORIGIN * rasterio.Affine.translation(0, 512)
        np.testing.assert_allclose(p1.read(), p2.read(), atol=1e-5)


@pytest.fixture(scope="module")
def coarser(inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tall raster's pixels at 0.65 m where the model learnt at 0.5 m: detect resamples it
    to the model's resolution (1.3x the rows) and back."""
    raster, _ = inputs
    out = tmp_path_factory.mktemp("coarser") / "coarser.tif"
    with rasterio.open(raster) as src:
        profile = src.profile | {"transform": ORIGIN * rasterio.Affine.scale(1.3)}
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read())
    return out


@pytest.mark.parametrize("rows", [None, (600, 1300)], ids=["whole", "extent"])
def test_a_model_at_another_resolution_on_two_workers_gives_what_one_process_gives(
    inputs: tuple[Path, Path], coarser: Path, tmp_path: Path, rows: tuple[int, int] | None
) -> None:
    """Strips are rows of the raster's grid (two strips on the whole raster, one on the
    extent's window): each worker predicts the model-grid rows its strip is resampled from
    (windows of the whole model-grid plan) and resamples them back."""
    _, model = inputs
    extent = None
    if rows is not None:
        t = ORIGIN * rasterio.Affine.scale(1.3)
        (x0, y0), (x1, y1) = t * (30, rows[1]), t * (270, rows[0])
        extent = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        heard = RecordingProgress()
        one = _run(coarser, model, tmp_path / "one.gpkg", heard, extent=extent)
    finally:
        torch.set_num_threads(threads)
    assert any("resampled" in line for line in heard.messages)  # the model's grid is another
    two = _run(coarser, model, tmp_path / "two.gpkg", extent=extent, dask_workers=2)
    assert (one["width"], one["height"]) == (two["width"], two["height"])
    assert one["height"] == (HEIGHT if rows is None else HEIGHT - 512)  # whole blocks
    assert one["buildings"] == two["buildings"] > 5
    assert (_polygons(tmp_path / "one.gpkg") == _polygons(tmp_path / "two.gpkg")).all()
    with rasterio.open(tmp_path / "one.tif") as p1, rasterio.open(tmp_path / "two.tif") as p2:
        assert p1.transform == p2.transform
        np.testing.assert_allclose(p1.read(), p2.read(), atol=1e-5)
