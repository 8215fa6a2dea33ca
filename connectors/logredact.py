"""Keeps query strings out of HTTP client logs.

urllib3 logs every request line at DEBUG, query string included: that is where a SAS token
signs each Blob request, and where WebHDFS would carry a delegation token. The remote
connectors install this filter on urllib3's loggers when they load, so ``CAIRN_LOG_LEVEL=debug``
shows the requests without the secrets.
"""

from __future__ import annotations

import logging
import re

_QUERY = re.compile(r"\?[^\s\"'<>]*")
LOGGERS = ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry")


class QueryRedactor(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg = _QUERY.sub("?<redacted>", message)
            record.args = None
        return True


_FILTER = QueryRedactor()


def install() -> None:
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
