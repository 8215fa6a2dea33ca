# Stand-in for mongo:8.0: FerretDB (the binary the tests build, SQLite handler) on the local
# Python base, which the health check's wire-protocol ping needs. Like the mongo image: data in
# /data/db, port 27017, uid 999.
ARG BASE
FROM ${BASE}
COPY ferretdb /usr/local/bin/ferretdb
COPY mongo_ping.py /usr/local/bin/mongo_ping.py
RUN groupadd --system --gid 999 mongodb \
    && useradd --system --uid 999 --gid 999 --home-dir /data/db --no-create-home mongodb \
    && mkdir -p /data/db /var/lib/ferretdb \
    && chown 999:999 /data/db /var/lib/ferretdb
ENV FERRETDB_HANDLER=sqlite \
    FERRETDB_SQLITE_URL=file:/data/db/ \
    FERRETDB_LISTEN_ADDR=:27017 \
    FERRETDB_STATE_DIR=/var/lib/ferretdb \
    FERRETDB_TELEMETRY=disable \
    FERRETDB_DEBUG_ADDR=-
USER 999:999
EXPOSE 27017
HEALTHCHECK CMD ["python3", "/usr/local/bin/mongo_ping.py"]
ENTRYPOINT ["/usr/local/bin/ferretdb"]
