# Stand-in for docker.elastic.co/elasticsearch/elasticsearch: the integ-test zip the tests use,
# on Debian's JDK. Like the official image: home /usr/share/elasticsearch, data in its data/
# folder, uid 1000 gid 0, curl for the health check, settings from environment variables whose
# names have a dot (discovery.type=single-node), network.host 0.0.0.0 unless set.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && apt-get install --yes --no-install-recommends openjdk-17-jre-headless curl tini \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "$(dirname "$(dirname "$(readlink -f /usr/bin/java)")")" /opt/java
COPY elasticsearch /usr/share/elasticsearch
COPY elasticsearch-entrypoint.sh /usr/local/bin/elasticsearch-entrypoint
RUN useradd --uid 1000 --gid 0 --home-dir /usr/share/elasticsearch --no-create-home elasticsearch \
    && printf 'cluster.name: docker-cluster\nnetwork.host: 0.0.0.0\n' \
       > /usr/share/elasticsearch/config/elasticsearch.yml \
    && mkdir -p /usr/share/elasticsearch/data /usr/share/elasticsearch/logs \
    && chown -R 1000:0 /usr/share/elasticsearch/config /usr/share/elasticsearch/data \
       /usr/share/elasticsearch/logs
ENV ES_JAVA_HOME=/opt/java
WORKDIR /usr/share/elasticsearch
USER 1000:0
EXPOSE 9200 9300
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/elasticsearch-entrypoint"]
