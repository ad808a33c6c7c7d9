"""HTTP routes under ``/api/v1/items``: public reads, owner-only writes."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Final, cast

from agora_kit.params import BIGINT_MAX, MAX_OFFSET
from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, StringConstraints, WithJsonSchema

from agora_items import changes, service
from agora_items.deps import CurrentUserDep, SessionDep, UowDep
from agora_items.etags import etag_for, if_none_match_hits
from agora_items.fields import MAX_TAGS, TAG_SCHEMA, Currency, normalise_tags
from agora_items.models import PRICE_PRECISION, PRICE_SCALE, Item, ItemStatus
from agora_items.schemas import ItemCreate, ItemPage, ItemPublic, ItemReplace, ItemUpdate, SortOrder

MAX_LIMIT: Final = 100
MAX_SKIP: Final = MAX_OFFSET
_BIGINT_MAX: Final = BIGINT_MAX

router = APIRouter(prefix="/items", tags=["items"])

ItemId = Annotated[
    int, Path(ge=1, le=_BIGINT_MAX, description="The item's id, a positive integer.")
]
IfMatch = Annotated[
    str | None,
    Header(description="Apply the write only if the item still has this ETag (else 412)."),
]
IfNoneMatch = Annotated[
    str | None, Header(description="Answer 304 when the item still has one of these ETags.")
]
#: A price bound as the query string carries it: plain decimal notation, at most two decimals.
#: A pattern rather than a Decimal, so the published schema accepts exactly what passes.
#: Checked as a full match: what the published pattern allows is exactly what passes.
PRICE_PATTERN: Final = rf"^[0-9]{{1,{PRICE_PRECISION - PRICE_SCALE}}}(\.[0-9]{{1,{PRICE_SCALE}}})?$"
_PRICE = re.compile(PRICE_PATTERN[1:-1])


def _query_price(value: str | None) -> Decimal | None:
    if value is None:
        return None
    if not _PRICE.fullmatch(value):
        raise ValueError(
            f"must be a price in plain decimal notation with at most {PRICE_SCALE} decimals"
        )
    return Decimal(value)


QueryPrice = Annotated[
    Annotated[str, WithJsonSchema({"type": "string", "pattern": PRICE_PATTERN})] | None,
    AfterValidator(_query_price),
    Query(description="A price, e.g. `19.90` (at most two decimals)."),
]
SearchTerm = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]

_OWNER_ONLY: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid access token."},
    403: {"description": "The caller does not own the item."},
    404: {"description": "No such item."},
    412: {"description": "`If-Match` names an older version of the item."},
    422: {"description": "The body or a parameter is invalid."},
}


def _public(item: Item, response: Response) -> ItemPublic:
    response.headers["ETag"] = etag_for(item.version)
    return ItemPublic.model_validate(item)


def _invalid(loc: tuple[str, ...], msg: str, value: object) -> RequestValidationError:
    """A 422 shaped like FastAPI's own, for checks that span several parameters."""
    return RequestValidationError([{"loc": loc, "msg": msg, "type": "value_error", "input": value}])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ItemPublic,
    responses={
        201: {"description": "Created; `Location` and `ETag` name the new item."},
        401: {"description": "No valid access token."},
        403: {"description": "The caller's account has been deleted."},
    },
)
async def create_item(
    item_in: ItemCreate,
    principal: CurrentUserDep,
    uow: UowDep,
    request: Request,
    response: Response,
) -> ItemPublic:
    """List a new item owned by the caller (`Idempotency-Key` makes retries safe)."""
    item = await service.create_item(uow=uow, owner_id=principal.user_id, item_in=item_in)
    response.headers["Location"] = str(request.app.url_path_for("get_item", item_id=str(item.id)))
    return _public(item, response)


@router.get("", response_model=ItemPage)
async def list_items(
    session: SessionDep,
    skip: Annotated[int, Query(ge=0, le=MAX_SKIP, description="Items to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")] = 10,
    search: Annotated[
        SearchTerm | None, Query(description="Case-insensitive text in name or description.")
    ] = None,
    tag: Annotated[
        list[Annotated[str, WithJsonSchema(TAG_SCHEMA)]] | None,
        Query(max_length=MAX_TAGS, description="Items carrying every one of these tags."),
    ] = None,
    owner_id: Annotated[int | None, Query(ge=1, le=_BIGINT_MAX)] = None,
    min_price: QueryPrice = None,
    max_price: QueryPrice = None,
    item_status: Annotated[ItemStatus | None, Query(alias="status")] = None,
    currency: Annotated[Currency | None, Query()] = None,
    sort: Annotated[SortOrder, Query(description="`-` sorts descending.")] = SortOrder.NEWEST,
) -> ItemPage:
    """List items, newest first by default, with the total number that match."""
    # The validator turned the strings into Decimals (the annotation says what is published).
    # min_price above max_price is an empty range, not an error: no OpenAPI schema can
    # relate two parameters, and the answer (no item) is true.
    low, high = cast(Decimal | None, min_price), cast(Decimal | None, max_price)
    try:
        tags = normalise_tags(tag or [])
    except ValueError as exc:
        raise _invalid(("query", "tag"), str(exc), tag) from None
    query = service.ItemFilter(
        skip=skip,
        limit=limit,
        search=search,
        tags=tuple(tags),
        owner_id=owner_id,
        min_price=low,
        max_price=high,
        status=item_status,
        currency=currency,
        sort=sort,
    )
    items, total = await service.list_items(session=session, query=query)
    return ItemPage(
        items=[ItemPublic.model_validate(item) for item in items],
        total=total,
        skip=skip,
        limit=limit,
    )


@router.get(
    "/{item_id:int}",
    name="get_item",
    response_model=ItemPublic,
    responses={304: {"description": "Not modified (`If-None-Match`)."}, 404: {}},
)
async def read_item(
    item_id: ItemId, session: SessionDep, response: Response, if_none_match: IfNoneMatch = None
) -> ItemPublic | Response:
    """Return one item with its `ETag`; 304 when the client's copy is current."""
    item = await service.get_item(session=session, item_id=item_id)
    etag = etag_for(item.version)
    # Caches may keep it but must revalidate: the item can change at any time.
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match_hits(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    response.headers.update(headers)
    return ItemPublic.model_validate(item)


@router.patch(
    "/{item_id:int}",
    response_model=ItemPublic,
    responses={
        **_OWNER_ONLY,
        409: {
            "description": "The price sent does not fit the item's currency, or the currency "
            "sent does not fit its price (cents on a JPY item): send both together."
        },
    },
)
async def update_item(
    item_id: ItemId,
    item_in: ItemUpdate,
    principal: CurrentUserDep,
    uow: UowDep,
    response: Response,
    if_match: IfMatch = None,
) -> ItemPublic:
    """Change the fields sent (owner only); `description: null` clears the description."""
    item = await changes.update_item(
        uow=uow,
        item_id=item_id,
        actor_id=principal.user_id,
        changes=item_in.changes(),
        if_match=if_match,
    )
    return _public(item, response)


@router.put("/{item_id:int}", response_model=ItemPublic, responses=_OWNER_ONLY)
async def replace_item(
    item_id: ItemId,
    item_in: ItemReplace,
    principal: CurrentUserDep,
    uow: UowDep,
    response: Response,
    if_match: IfMatch = None,
) -> ItemPublic:
    """Replace the item's fields (owner only); omitted optional fields take their defaults."""
    item = await changes.replace_item(
        uow=uow, item_id=item_id, actor_id=principal.user_id, item_in=item_in, if_match=if_match
    )
    return _public(item, response)


@router.delete(
    "/{item_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_OWNER_ONLY,
)
async def delete_item(
    item_id: ItemId, principal: CurrentUserDep, uow: UowDep, if_match: IfMatch = None
) -> Response:
    """Delete the item (owner only)."""
    await changes.delete_item(
        uow=uow, item_id=item_id, actor_id=principal.user_id, if_match=if_match
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
