"""The brand model on ONNX Runtime (CPU): the default CPU runtime when the version ships its int8 ONNX file.

Why: measured on this project's 2-core AVX2 CPU, the int8 ONNX file (`carspot.classifier.onnx_export`) runs a
224 px crop in ~8.5 ms per core against ~15 ms on LiteRT, same accuracy (models/README.md). The file has three
named outputs (`ONNX_OUTPUTS`). Any batch and input side run in one session (ONNX Runtime sizes its buffers per
call).

ONNX Runtime runs every node of a session whatever outputs are fetched. A version with a car branch of its own
(`carspot.classifier.keras_model.build_car_branch`) is therefore cut at load (`carspot.classifier.onnx_graph`, in
~20 ms, without the ``onnx`` package) into two sessions, the brand network
(``probabilities``) and the car branch (``pooled``, ``feature_map``), so a call pays only for what it asks:
measured on one core, 256 px, batch 1 (2026-12-07): the whole file 114 crops/s, the brand part alone 169 (the same
as a version without a branch), the branch alone 430. A version whose features are the brand network's own
(made before the branch) stays one session: its parts overlap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from carspot.classifier.onnx_graph import OnnxGraph
from carspot.classifier.runtime import RunOutputs

__all__ = ["ONNX_OUTPUTS", "OnnxRuntime", "split_brand_and_car"]

ONNX_OUTPUTS = ("probabilities", "pooled", "feature_map")
"""The file's outputs: N x makes calibrated softmax, N x 1280 pooled features, N x H/32 x W/32 x 1280 map."""

SHARED_NODES_ALLOWED = 0.1
"""The share of the smaller part's nodes both parts may run: the input's quantization and the dequantization of
weights the two networks have in common (13 of 290 in version 20261206T170207Z). A version whose features are the
brand network's own shares nearly all (287 of 290)."""


def split_brand_and_car(graph: OnnxGraph) -> tuple[bytes, bytes] | None:
    """(brand part, car part) of a three-output file: pixels -> probabilities, and pixels -> pooled and
    feature_map, each with only the nodes it needs (`carspot.classifier.onnx_graph.OnnxGraph.cut`). None when the
    parts overlap (the features are the brand network's own): splitting would run the network twice; or when a node
    runs a subgraph (which the cut does not follow)."""
    if graph.has_subgraphs:
        return None
    brand = graph.cut(["probabilities"])
    car = graph.cut(["pooled", "feature_map"])
    if len(brand.nodes & car.nodes) > SHARED_NODES_ALLOWED * min(len(brand.nodes), len(car.nodes)):
        return None
    return brand.model, car.model


class OnnxRuntime:
    """Runs an ``.onnx`` brand model; not thread-safe (the caller holds a lock)."""

    name = "onnxruntime"
    device = "cpu"
    features_unavailable = ""

    def __init__(self, model: bytes, *, threads: int | None = 2, max_batch: int = 32) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default, one per core
        options.inter_op_num_threads = 1
        # Idle pool threads must not spin: the detector runs between classifier calls on the same cores.
        # Measured, one process with 2 threads, 400 composites: detector mode 26.5 images/s without spinning,
        # 21.6 with it; standard mode (the classifier alone) 165 vs 176.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session(data: bytes) -> Any:
            try:
                return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # ONNX Runtime's own errors (InvalidProtobuf, Fail, ...) derive from Exception
                raise ValueError(f"{type(exc).__name__}: {exc}") from exc

        graph = OnnxGraph(model)
        if set(graph.outputs) != set(ONNX_OUTPUTS):
            raise ValueError(f"expected the outputs {ONNX_OUTPUTS}, the file has {sorted(graph.outputs)}")
        self.max_batch = max_batch
        parts = split_brand_and_car(graph)
        del graph  # its views of the file's bytes
        self._sessions: dict[str, Any]
        if parts is None:
            self._sessions = dict.fromkeys(ONNX_OUTPUTS, session(model))
        else:
            brand, car = session(parts[0]), session(parts[1])
            self._sessions = {"probabilities": brand, "pooled": car, "feature_map": car}
        self.separable = parts is not None
        """The car features cost no brand pass (and the brand probabilities no car-branch pass)."""
        brand_outputs = {o.name: o for o in self._sessions["probabilities"].get_outputs()}
        self.classes = int(brand_outputs["probabilities"].shape[-1])

    has_pooled = True
    has_feature_map = True

    def run(
        self, pixels: np.ndarray, *, probabilities: bool = True, pooled: bool = False, feature_map: bool = False
    ) -> RunOutputs:
        wanted = [name for name, asked in zip(ONNX_OUTPUTS, (probabilities, pooled, feature_map), strict=True) if asked]
        feed = {"pixels": np.ascontiguousarray(pixels)}
        values: dict[str, np.ndarray] = {}
        for session in dict.fromkeys(self._sessions[name] for name in wanted):  # each session once, in order
            names = [name for name in wanted if self._sessions[name] is session]
            values.update(zip(names, session.run(names, feed), strict=True))
        return RunOutputs(
            probabilities=values.get("probabilities"),
            pooled=values.get("pooled"),
            feature_map=values.get("feature_map"),
        )
