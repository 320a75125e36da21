"""The CSV files of the analytics tables: their names, columns and cells, defined once for
every place that offers them (the API's `Accept: text/csv` and the dashboard's downloads).

Each returns the file's bytes as they are written, read on a session of its own
(`tables.stream`), so a download of any size streams in constant memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy.orm import Session

from dripstone.analytics import export, tables

Read = Callable[[Session], Iterator[tables.Row]]

DELIVERIES_FILE = "campaign_mailing_deliveries"
CLICKERS_FILE = "subscribers_by_tracking_link"
LINKS_FILE = "tracking_links_by_unique_link"

DELIVERY_COLUMNS = (
    "recipient",
    "created_at",
    "delivered",
    "viewed",
    "clicked",
    "bounced",
    "unsubscribed",
    "tracking_links",
)
LINK_COLUMNS = ("html_id", "target_url", "clicked", "human_clicked", "clicks")


def deliveries_csv(read: Read) -> Iterator[bytes]:
    """The deliveries table: one column per field of its rows (`tracking_links` as JSON)."""
    return export.csv_rows(
        DELIVERY_COLUMNS, tables.stream(read), lambda row: [row[n] for n in DELIVERY_COLUMNS]
    )


def clickers_csv(session: Session, account_id: int, read: Read) -> Iterator[bytes]:
    """Who clicked a link: id, email, names, then one column per custom field of the account
    (named now, on `session`, so the header is known before the rows stream)."""
    fields = tables.subscriber_columns(session, account_id)
    header = ["id", "email", "first_name", "last_name", *(name for _, name in fields)]

    def cells(row: tables.Row) -> Sequence[Any]:
        attributes = row["attributes"]
        values = {
            v["subscriber_custom_field_type_id"]: v["value"] for v in attributes["custom_fields"]
        }
        named = [attributes.get(key) for key in ("email", "first_name", "last_name")]
        return [row["id"], *named, *(values.get(uuid) for uuid, _ in fields)]

    return export.csv_rows(header, tables.stream(read), cells)


def links_csv(rows: Sequence[tables.Row]) -> Iterator[bytes]:
    """The links of a send (`tables.unique_links`) with their clicks."""
    return export.csv_rows(LINK_COLUMNS, rows, lambda row: [row[n] for n in LINK_COLUMNS])
