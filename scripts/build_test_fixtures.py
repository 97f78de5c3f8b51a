#!/usr/bin/env python3
"""Build the test fixtures under tests/fixtures/ from data/flights/sample.parquet.

Traffic files written by other tools, in the encodings real logs use:
  formats/polars.parquet          written by polars: zstd, string columns, ns timestamps in
                                  America/New_York, the entity as a categorical
  formats/pyarrow_naive.parquet   written by pyarrow: ms timestamps without a zone, integer
                                  entity ids, large_string segments, a boolean label, float32 and
                                  uint8 features, snappy
  split/b-early.parquet, split/a-late.parquet
                                  the sample cut in two files whose names sort the wrong way
                                  (files are read in time order, not name order)
Models:
  models/zipmap.onnx      logistic regression exported with the default ZipMap output
  models/regressor.onnx   a regression model with an [N, 1] output
  models/narrow17.onnx    a model taking 17 features, without feature_names metadata
  models/faulty.onnx      scores by day of week from a 6-entry table: Saturday (5) scores NaN and
                          Sunday (6) indexes past the table, so ONNX Runtime fails any batch
                          holding a Sunday (tests that failing rows are isolated, not fatal)
  models/per_feature.onnx one [N, 1] input per feature (distance, temp), mapped by input name:
                          score = 0.001 * distance + 0.01 * temp
  models/expected.parquet Python ONNX Runtime's scores of zipmap.onnx and regressor.onnx on the
                          sample rows

Usage: python3 scripts/build_test_fixtures.py (after scripts/build_demo_data.py)
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler

ROOT = pathlib.Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "flights" / "sample.parquet"
OUT = ROOT / "tests" / "fixtures"

FEATURES = [
    "sched_dep_min", "day_of_week", "distance", "carrier_code", "origin_code", "dest_code",
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib",
    "plane_year", "seats", "dep_load",
]


def features(table: pa.Table, names=FEATURES) -> np.ndarray:
    return np.column_stack([table[n].cast(pa.float32()).to_numpy(zero_copy_only=False) for n in names]).astype("float32")


def export(model, width: int, path: pathlib.Path, zipmap: bool, names: list[str] | None) -> None:
    options = {id(model): {"zipmap": zipmap}} if hasattr(model, "predict_proba") else None
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, width]))],
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    if names is not None:
        entry = onx.metadata_props.add()
        entry.key, entry.value = "feature_names", ",".join(names)
    onnx.save(onx, path)


def faulty_model(path: pathlib.Path) -> None:
    from onnx import TensorProto, helper

    table = helper.make_tensor("table", TensorProto.FLOAT, [6], [0.1, 0.2, 0.3, 0.4, 0.5, float("nan")])
    column = helper.make_tensor("column", TensorProto.INT64, [], [FEATURES.index("day_of_week")])
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["input", "column"], ["day"], axis=1),
            helper.make_node("Cast", ["day"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "index"], ["score"], axis=0),
        ],
        "faulty",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, len(FEATURES)])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None])],
        initializer=[table, column],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "feature_names", ",".join(FEATURES)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def per_feature_model(path: pathlib.Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["distance", "a"], ["x"]),
            helper.make_node("Mul", ["temp", "b"], ["y"]),
            helper.make_node("Add", ["x", "y"], ["score"]),
        ],
        "per_feature",
        [
            helper.make_tensor_value_info("distance", TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info("temp", TensorProto.DOUBLE, [None, 1]),
        ],
        [helper.make_tensor_value_info("score", TensorProto.DOUBLE, [None, 1])],
        initializer=[helper.make_tensor("a", TensorProto.FLOAT, [], [0.001]), helper.make_tensor("b", TensorProto.DOUBLE, [], [0.01])],
    )
    # distance is float and temp double: the Mul of distance is cast up before the Add.
    graph.node.insert(1, helper.make_node("Cast", ["x"], ["x64"], to=TensorProto.DOUBLE))
    graph.node[3].input[0] = "x64"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def main() -> None:
    for sub in ["formats", "split", "models"]:
        (OUT / sub).mkdir(parents=True, exist_ok=True)
    sample = pq.read_table(SAMPLE)

    frame = pl.from_arrow(sample)
    frame = frame.with_columns(
        pl.col("request_ts").dt.cast_time_unit("ns").dt.convert_time_zone("America/New_York"),
        pl.col("label_ts").dt.cast_time_unit("ns").dt.convert_time_zone("America/New_York"),
        pl.col("entity_id").cast(pl.Categorical),
        pl.col("origin").cast(pl.String),
        pl.col("carrier").cast(pl.String),
    )
    frame.write_parquet(OUT / "formats" / "polars.parquet", compression="zstd")

    codes = {v: i for i, v in enumerate(sorted(set(sample["entity_id"].to_pylist())))}
    naive = sample.set_column(
        sample.schema.get_field_index("request_ts"), "request_ts",
        sample["request_ts"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.timestamp("ms")),
    )
    naive = naive.set_column(naive.schema.get_field_index("label_ts"), "label_ts", naive["label_ts"].cast(pa.timestamp("ms", tz="UTC")).cast(pa.timestamp("ms")))
    naive = naive.set_column(naive.schema.get_field_index("entity_id"), "entity_id", pa.array([codes[e] for e in sample["entity_id"].to_pylist()], pa.int64()))
    naive = naive.set_column(naive.schema.get_field_index("origin"), "origin", sample["origin"].cast(pa.large_string()))
    naive = naive.set_column(naive.schema.get_field_index("label"), "label", pc.equal(sample["label"], 1))
    naive = naive.set_column(naive.schema.get_field_index("temp"), "temp", sample["temp"].cast(pa.float32()))
    naive = naive.set_column(naive.schema.get_field_index("day_of_week"), "day_of_week", sample["day_of_week"].cast(pa.uint8()))
    pq.write_table(naive, OUT / "formats" / "pyarrow_naive.parquet", compression="snappy")

    half = sample.num_rows // 2
    pq.write_table(sample.slice(0, half), OUT / "split" / "b-early.parquet")
    pq.write_table(sample.slice(half), OUT / "split" / "a-late.parquet")

    traffic = pq.read_table(ROOT / "data" / "flights" / "traffic.parquet")
    train = traffic.filter(pc.and_(pc.is_valid(traffic["label"]), pc.less(pc.month(traffic["request_ts"]), 5)))
    train = train.slice(0, 20000)
    x, y = features(train), train["label"].to_numpy().astype(int)

    logistic = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=500))
    logistic.fit(x, y)
    export(logistic, len(FEATURES), OUT / "models" / "zipmap.onnx", zipmap=True, names=FEATURES)

    regressor = HistGradientBoostingRegressor(max_iter=50, random_state=0).fit(x, y.astype(float))
    export(regressor, len(FEATURES), OUT / "models" / "regressor.onnx", zipmap=False, names=FEATURES)

    narrow = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=500)).fit(x[:, :17], y)
    export(narrow, 17, OUT / "models" / "narrow17.onnx", zipmap=False, names=None)

    faulty_model(OUT / "models" / "faulty.onnx")
    per_feature_model(OUT / "models" / "per_feature.onnx")

    xs = features(sample)
    zip_session = ort.InferenceSession(str(OUT / "models" / "zipmap.onnx"), providers=["CPUExecutionProvider"])
    zip_out = zip_session.run(["output_probability"], {"input": xs})[0]
    reg_session = ort.InferenceSession(str(OUT / "models" / "regressor.onnx"), providers=["CPUExecutionProvider"])
    reg_out = reg_session.run(None, {"input": xs})[0]
    pq.write_table(
        pa.table({
            "request_id": sample["request_id"],
            "zipmap_score": pa.array([row[1] for row in zip_out], pa.float32()),
            "regressor_score": pa.array(reg_out.reshape(-1), pa.float32()),
        }),
        OUT / "models" / "expected.parquet",
    )
    print("fixtures written to", OUT)


if __name__ == "__main__":
    main()
