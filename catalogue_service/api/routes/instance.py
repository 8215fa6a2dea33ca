"""Which catalogue this is: crawlers key their state by the answer."""

from __future__ import annotations

from fastapi import APIRouter

from cairn.models import CatalogueInstance
from cairn.web import CairnRoute
from catalogue_service.api.deps import CatalogueDep, ReadGuard

router = APIRouter(prefix="/api/v1", tags=["instance"], route_class=CairnRoute)


@router.get(
    "/instance",
    dependencies=[ReadGuard],
    summary="The identity of this catalogue's store",
    description=(
        "An id created with the store (a new or wiped store has a new one) and the backend. "
        "A crawler remembers what it pushed per catalogue instance, so it never skips "
        "assets that this catalogue lacks."
    ),
)
async def get_instance(catalogue: CatalogueDep) -> CatalogueInstance:
    return await catalogue.instance()
