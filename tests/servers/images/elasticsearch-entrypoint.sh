#!/bin/bash
# As the official image does: every environment variable whose name has a dot is a setting,
# passed on as -Ename=value (discovery.type, xpack.security.enabled, network.host, ...).
set -euo pipefail
settings=()
while IFS= read -r -d '' pair; do
    name="${pair%%=*}"
    if [[ "$name" == *.* ]]; then
        settings+=("-E${pair}")
    fi
done < <(env -0)
exec /usr/share/elasticsearch/bin/elasticsearch "${settings[@]}" "$@"
