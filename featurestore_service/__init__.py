"""The feature store service: immutable versioned feature sets, lineage to catalogue assets.

``app.py`` builds the FastAPI app; ``service.py`` is the facade the routes call;
``backends/`` hold the stores (``sqlite`` is the embedded default); ``blobstore/`` keeps the
Parquet files of tables (in a local folder, on S3, ADLS or HDFS); ``outbox.py`` registers each
set in the catalogue; ``seed.py`` and ``cli.py`` are ``cairn up``'s seeding and
``cairn featureset``.
"""
