# Stand-in for python:3.11-slim-bookworm, from Debian's own packages: Debian 12's python3 (3.11)
# with venv support. Trusts what the machine building it trusts (its extra CA certificates and
# pip configuration), since the Cairn build downloads from PyPI through the machine's network.
ARG BASE
FROM ${BASE}
COPY ca-certificates/ /usr/local/share/ca-certificates/
COPY pip.conf /etc/pip.conf
RUN apt-get update \
    && apt-get install --yes --no-install-recommends python3 python3-venv \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
