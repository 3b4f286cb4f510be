"""Score a Parquet dataset with a detector model file on Spark (``mapInPandas``).

    spark-submit docs/spark_score.py MODEL.joblib INPUT_DIR OUTPUT_DIR

detector must be installed on every executor and MODEL readable there (a shared path,
or ship it with ``--files`` and open ``SparkFiles.get``). The model is loaded once per
executor Python process, not once per batch. Two things the local and Dask engines do
for you are done here with Spark itself: the whole-dataset parcel-burst context (a
``groupBy``, broadcast to the tasks) and the global duplicate-id check and rank (window
functions over the input order). The scores, lanes, reasons and ranks equal those of
``detector score`` on the same rows (tests/test_spark.py runs this file on a local
Spark and checks it row by row). Rejected rows are returned by ``reject_spark``.
"""

from __future__ import annotations

import sys

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

# Columns read as text, whatever Parquet says: hs_code keeps its leading zeros.
TEXT = ("declaration_id", "hs_code", "origin_country", "dispatch_country", "transport_mode",
        "exporter_id", "importer_id", "declarant_id", "date", "unit", "package_type",
        "currency", "description", "composition")
_models: dict = {}


def _model(path: str):
    if path not in _models:                       # once per executor Python process
        import detector

        _models[path] = detector.load_model(path)
    return _models[path]


def _prepare(spark: SparkSession, input_path: str) -> tuple[DataFrame, object]:
    df = spark.read.parquet(input_path)
    df = df.select([F.col(c).cast("string") if c in TEXT else F.col(c) for c in df.columns])
    df = df.withColumn("_row", F.monotonically_increasing_id())      # the input order
    # Duplicate ids: the first occurrence is scored, the others are rejected.
    first = Window.partitionBy(F.trim("declaration_id")).orderBy("_row")
    df = df.withColumn("_dup", F.col("declaration_id").isNotNull()
                       & (F.trim("declaration_id") != "")
                       & (F.row_number().over(first) > 1))
    # Whole-dataset parcel bursts per (sender, day): small, so broadcast to every task.
    from detector.features import DeclarationFeatures

    def bursts(batches):
        for pdf in batches:
            yield DeclarationFeatures.burst_context(pdf).rename("n").reset_index()

    counts = (df.select("exporter_id", "date", "transport_mode")
              .mapInPandas(bursts, "e string, d long, n long")
              .groupBy("e", "d").agg(F.sum("n").alias("n")).toPandas())
    context = counts.set_index(["e", "d"])["n"].astype("int64").sort_index()
    return df, spark.sparkContext.broadcast(context)


def score_spark(spark: SparkSession, model_path: str, input_path: str) -> DataFrame:
    """Scored rows (the columns of ``detector score``), ranked over the whole dataset."""
    model = _model(model_path)
    df, context = _prepare(spark, input_path)
    extra = ("fraud_probability double, risk_score double, "
             if model.rank_column == "risk_score" else "")

    def score(batches):
        from detector.validate import validate

        m = _model(model_path)
        for pdf in batches:
            pdf = pdf[~pdf.pop("_dup")].reset_index(drop=True)
            rows = pdf.pop("_row").to_numpy()
            out = m.score_valid(validate(pdf).valid, context.value)
            out["_row"] = rows[out.index.to_numpy()]
            out["reasons"] = out["reasons"].map(list)
            yield out.reset_index(drop=True)

    scored = df.mapInPandas(score, f"declaration_id string, anomaly_score double, {extra}"
                                   "flagged boolean, lane string, random_selected boolean, "
                                   "reasons array<string>, _row long")
    # One global order, ties broken by input order: the rank of the local engine.
    order = Window.orderBy(F.desc(model.rank_column), F.asc("_row"))
    return (scored.withColumn("rank", F.row_number().over(order).cast("long"))
            .orderBy("_row").select(*model.output_columns))


def reject_spark(spark: SparkSession, input_path: str) -> DataFrame:
    """Rejected rows: declaration_id, column and reason, as in ``OUTPUT.rejects.csv``."""
    df, _ = _prepare(spark, input_path)

    def reject(batches):
        import pandas as pd

        from detector.validate import validate

        for pdf in batches:
            rows = pdf.pop("_row").to_numpy()
            dup = pdf.pop("_dup").to_numpy()
            res = validate(pdf[~dup].reset_index(drop=True)).rejects
            yield pd.DataFrame({
                "declaration_id": [*res["declaration_id"],
                                   *pdf.loc[dup, "declaration_id"].str.strip()],
                "column": [*res["column"], *["declaration_id"] * int(dup.sum())],
                "reason": [*res["reason"], *["duplicate declaration_id"] * int(dup.sum())],
                "_row": [*rows[~dup][res["row_number"].to_numpy(int) - 1], *rows[dup]]})

    return (df.mapInPandas(reject, "declaration_id string, column string, reason string, "
                                   "_row long").orderBy("_row"))


if __name__ == "__main__":
    model_path, input_path, output_path = sys.argv[1:4]
    spark = SparkSession.builder.appName("detector-score").getOrCreate()
    score_spark(spark, model_path, input_path).write.parquet(output_path)
    reject_spark(spark, input_path).drop("_row").write.parquet(output_path + ".rejects")
