#!/usr/bin/env python3
"""Build the model fixtures of tests/cli/inputs.rs under tests/fixtures/inputs/ from data/flights/sample.parquet.

  logits.onnx         a linear head without its sigmoid, as a BCEWithLogits-trained torch export is:
                      one [N, 1] float output "logit" whose values leave [0, 1]
  zipmap_strings.onnx a scikit-learn pipeline trained on string labels ("late", "on_time"),
                      exported with the default ZipMap: seq(map(string, float))
  int_output.onnx     a single int64 [N] output (a class id, no probabilities)
  custom_domain.onnx  a node of the operator domain "com.example.custom", which ONNX Runtime lacks
  multiclass.onnx     a 3-class logistic regression ([N, 3] probabilities, zipmap=False) of
                      label + (distance > 1000): classes 0, 1, 2
  partitioned/duckdb/origin=*/data_0.parquet
                      the sample written by duckdb's COPY ... (PARTITION_BY (origin)): Hive folders,
                      the origin column only in the folder names, rows in the writer's own order
  partitioned/pyarrow/month=*/part-0.parquet
                      the sample written by pyarrow.dataset.write_dataset with a Hive "month" key
  expected.parquet    Python ONNX Runtime's scores on the sample: sigmoid(logit) of logits.onnx and
                      P("late") of zipmap_strings.onnx

Usage: python3 scripts/build_input_fixtures.py
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "flights" / "sample.parquet"
OUT = ROOT / "tests" / "fixtures" / "inputs"
FEATURES = [
    "sched_dep_min", "day_of_week", "distance", "carrier_code", "origin_code", "dest_code",
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib",
    "plane_year", "seats", "dep_load",
]


def features(table: pa.Table) -> np.ndarray:
    return np.column_stack([table[n].cast(pa.float32()).to_numpy(zero_copy_only=False) for n in FEATURES]).astype("float32")


def save(graph, path: pathlib.Path, domains=()) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), *[helper.make_opsetid(d, 1) for d in domains]])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "feature_names", ",".join(FEATURES)
    onnx.save(model, path)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sample = pq.read_table(SAMPLE)
    xs = features(sample)
    x = np.nan_to_num(xs)
    y = sample["label"].to_numpy(zero_copy_only=False)
    known = ~np.isnan(y.astype(float))

    # The logistic regression's own coefficients on standardised inputs, folded into one Gemm:
    # logit = x·w + b, with NaN features imputed as 0 by the model itself.
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    fit = LogisticRegression(max_iter=1000).fit((x[known] - mean) / std, y[known].astype(int))
    w = (fit.coef_[0] / std).astype("float32").reshape(-1, 1)
    b = np.array([fit.intercept_[0] - float((fit.coef_[0] * mean / std).sum())], "float32")
    graph = helper.make_graph(
        [helper.make_node("IsNaN", ["input"], ["nan"]), helper.make_node("Where", ["nan", "zero", "input"], ["clean"]), helper.make_node("Gemm", ["clean", "w", "b"], ["logit"])],
        "logits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, len(FEATURES)])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, [None, 1])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, list(w.shape), w.reshape(-1)), helper.make_tensor("b", TensorProto.FLOAT, [1], b), helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    save(graph, OUT / "logits.onnx")

    names = np.where(y[known].astype(int) == 1, "late", "on_time")
    pipeline = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=500)).fit(xs[known], names)
    onx = convert_sklearn(pipeline, initial_types=[("input", FloatTensorType([None, len(FEATURES)]))], target_opset={"": 17, "ai.onnx.ml": 3})
    entry = onx.metadata_props.add()
    entry.key, entry.value = "feature_names", ",".join(FEATURES)
    onnx.save(onx, OUT / "zipmap_strings.onnx")

    graph = helper.make_graph(
        [helper.make_node("ArgMax", ["input"], ["class_id"], axis=1, keepdims=0)],
        "int_output",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, len(FEATURES)])],
        [helper.make_tensor_value_info("class_id", TensorProto.INT64, [None])],
    )
    save(graph, OUT / "int_output.onnx")

    graph = helper.make_graph(
        [helper.make_node("Score", ["input"], ["score"], domain="com.example.custom")],
        "custom_domain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, len(FEATURES)])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None])],
    )
    save(graph, OUT / "custom_domain.onnx", domains=["com.example.custom"])

    classes = y[known].astype(int) + (sample["distance"].to_numpy()[known] > 1000).astype(int)
    multi = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=500)).fit(xs[known], classes)
    onx = convert_sklearn(multi, initial_types=[("input", FloatTensorType([None, len(FEATURES)]))], options={id(multi): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    entry = onx.metadata_props.add()
    entry.key, entry.value = "feature_names", ",".join(FEATURES)
    onnx.save(onx, OUT / "multiclass.onnx")

    import shutil

    import duckdb
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    for sub in ["duckdb", "pyarrow"]:
        shutil.rmtree(OUT / "partitioned" / sub, ignore_errors=True)
    (OUT / "partitioned").mkdir(exist_ok=True)
    plain = sample.cast(pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in sample.schema]))
    con = duckdb.connect()
    con.register("sample", plain)
    con.execute(f"COPY (SELECT * FROM sample) TO '{OUT / 'partitioned' / 'duckdb'}' (FORMAT PARQUET, PARTITION_BY (origin))")
    months = plain.append_column("month", pc.strftime(plain["request_ts"], "%Y-%m"))
    ds.write_dataset(months, OUT / "partitioned" / "pyarrow", format="parquet", partitioning=["month"], partitioning_flavor="hive")

    logits = ort.InferenceSession(str(OUT / "logits.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": xs})[0].reshape(-1)
    strings = ort.InferenceSession(str(OUT / "zipmap_strings.onnx"), providers=["CPUExecutionProvider"]).run(["output_probability"], {"input": xs})[0]
    pq.write_table(
        pa.table({
            "request_id": sample["request_id"],
            "sigmoid_score": pa.array(1.0 / (1.0 + np.exp(-logits.astype("float64"))), pa.float64()),
            "late_score": pa.array([row["late"] for row in strings], pa.float32()),
        }),
        OUT / "expected.parquet",
    )
    print("fixtures written to", OUT, "logit range", float(logits.min()), float(logits.max()))


if __name__ == "__main__":
    main()
