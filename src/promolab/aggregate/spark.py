"""The aggregation on Apache Spark (``promolab analyze --engine spark``): the input files registered as
Spark views, :mod:`promolab.aggregate.portable`'s query run by Spark SQL, its rows read back and checked.

Spark runs where ``PROMOLAB_SPARK_MASTER`` says (default ``local[*]``: this machine's cores), dates rows
in UTC as DuckDB does, and reads Parquet and CSV (header, types inferred) files, folders and patterns.
What the portable query does not translate (row-numbered units files) is refused by name.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

from promolab.aggregate.portable import refuse_untranslated, stats_from_rows, warehouse_query
from promolab.errors import DataError, SpecError, first_line
from promolab.sources import DataPath, RemoteInput, input_files
from promolab.spec import ExperimentSpec
from promolab.stats.moments import ExperimentStats

SETTINGS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",  # no progress bar on the terminal
    "spark.sql.session.timeZone": "UTC",  # rows dated as DuckDB dates them
}


def spark_stats(spec: ExperimentSpec, paths: Mapping[str, DataPath], cuped: bool = True) -> ExperimentStats:
    """The per-arm statistics of ``spec``'s data files (``paths`` by data name) computed by Spark.

    Raises:
        DataError: PySpark missing, unreadable inputs, or data the checks refuse.
        SpecError: a spec feature the query does not translate.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise DataError(
            "--engine spark needs PySpark: pip install 'promolab[spark]' (and Java 17+)"
        ) from None
    views = {name: f"promolab_in_{name}" for name in paths}
    refuse_untranslated(spec, cuped)  # before Spark starts
    master = os.environ.get("PROMOLAB_SPARK_MASTER", "local[*]")
    builder = SparkSession.builder.master(master).appName(f"promolab {spec.id}")
    for key, value in SETTINGS.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as error:  # no Java, a master that cannot be reached
        raise DataError(
            f"--engine spark: Spark did not start ({first_line(error)}); it needs Java 17+"
        ) from None
    spark.sparkContext.setLogLevel("ERROR")  # stderr carries promolab's own warnings
    untimed: list[str] = []  # event tables without data.timestamp: every row counts, as on DuckDB
    try:
        for name, path in paths.items():
            if isinstance(path, RemoteInput):  # Spark lists a pattern through Hadoop's file systems
                files, kind = [str(path)], path.kind(name)
            else:
                found = input_files(path, name)
                files, kind = [str(f) for f in found.files], found.kind
            if kind == "parquet":  # Parquet files are merged by column name
                frame = spark.read.parquet(*files)
            else:  # Spark applies one CSV header to every file: read each, then union by name
                reader = spark.read.option("header", True).option("inferSchema", True)
                frame = functools.reduce(lambda a, b: a.unionByName(b), (reader.csv(f) for f in files))
            frame.createOrReplaceTempView(views[name])
            timestamp = spec.data.timestamp
            if timestamp is not None and timestamp not in frame.columns and name in spec.data.tables:
                untimed.append(name)
        query = warehouse_query(spec, "spark", views, cuped, untimed)
        rows = [row.asDict() for row in spark.sql(query).collect()]
    except Exception as error:  # Spark's analysis and execution errors (a missing column, a bad file)
        if isinstance(error, DataError | SpecError):
            raise
        raise DataError(f"{spec.id}: Spark could not aggregate the data: {first_line(error)}") from None
    finally:
        spark.stop()
    return stats_from_rows(spec, rows, "Spark's result", cuped)
