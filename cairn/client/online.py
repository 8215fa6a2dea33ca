"""The answer of an online lookup, as Feast's Python SDK shapes it (``OnlineResponse``).

The service answers Feast feature server's JSON (one result per column); this wraps it with
``to_dict()`` (column name -> values), ``to_arrow()`` and ``to_df()`` (pandas), and keeps the raw
JSON with its statuses and event timestamps in ``raw``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from cairn.client._lazy import LazyModule
from cairn.jsonfloats import named_floats

if TYPE_CHECKING:
    import pandas
    import pyarrow as pa
else:
    pa = LazyModule("pyarrow")  # on first use: the UI never asks for Arrow


@dataclass(slots=True)
class OnlineFeatures:
    raw: dict[str, Any]

    @classmethod
    def from_response(cls, response: httpx.Response) -> OnlineFeatures:
        return cls(orjson.loads(response.content))

    @property
    def feature_names(self) -> list[str]:
        return list(self.raw["metadata"]["feature_names"])

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, list[Any]]:
        """``{column: [value per entity row]}``, entity columns first."""
        out: dict[str, list[Any]] = {}
        for name, result in zip(self.feature_names, self.raw["results"], strict=True):
            out[name] = result["values"]
        if include_event_timestamps:
            for name, result in zip(self.feature_names, self.raw["results"], strict=True):
                out.setdefault(f"{name}__ts", result["event_timestamps"])
        return out

    def statuses(self) -> dict[str, list[str]]:
        return {
            name: result["statuses"]
            for name, result in zip(self.feature_names, self.raw["results"], strict=True)
        }

    def to_arrow(self) -> pa.Table:
        columns = {}
        for name, values in self.to_dict().items():
            try:
                columns[name] = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                # A float column with NaN or infinities, which JSON carries by name.
                floats = named_floats(values)
                if floats is None:
                    raise
                columns[name] = pa.array(floats, pa.float64())
        return pa.table(columns)

    def to_df(self) -> pandas.DataFrame:
        return self.to_arrow().to_pandas()


def online_body(
    features: list[str], entities: dict[str, list[Any]], full_feature_names: bool
) -> dict[str, Any]:
    return {
        "features": list(features),
        "entities": {key: _json_values(values) for key, values in entities.items()},
        "full_feature_names": full_feature_names,
    }


def _json_values(values: Any) -> list[Any]:
    """Key values as JSON carries them. Keys often come from a DataFrame column: a numpy,
    pandas or Arrow array gives its values by ``tolist()``, and a numpy scalar (``np.int64``,
    which the JSON encoder refuses) its Python value by ``item()``."""
    listed = values.tolist() if hasattr(values, "tolist") else list(values)
    return [v.item() if hasattr(v, "item") and not isinstance(v, str) else v for v in listed]
