"""The input contract: every source table the pipeline reads, column by column.

This module is the single source of truth for the raw layout. The generator writes it, the
ingest reads it, and a test checks that `data/README.md` and the dbt sources YAML describe
exactly these columns.

Files land as daily drops: ``data/raw/<source>/<table>/<YYYY-MM-DD>.csv`` where the date is
the day the file *landed* (not the day of the events in it: late rows are normal). A
partition for ``as_of_date`` D sees only files whose landing date is <= D.

Timestamps are ISO-8601 text with an offset (``2025-03-01T14:03:11+02:00``) or ``Z``; a
timestamp without an offset is read as UTC. They are read as text and parsed by the ingest,
because DuckDB 1.5's CSV reader turns an unparseable TIMESTAMPTZ into NULL silently
(PITFALLS.md); an unparseable value is quarantined with file, line and column.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

# A landed file's name: its landing day, <YYYY-MM-DD>.csv.
DATE_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.csv$")


def landing_date(name: str) -> dt.date | None:
    """The landing day a file name states, or None for any other name or an impossible date
    (e.g. 2026-02-30.csv; readers that skip it leave the ingest to name it)."""
    m = DATE_FILE.match(name)
    if not m:
        return None
    try:
        return dt.date.fromisoformat(m.group(1))
    except ValueError:
        return None


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # DuckDB type the column is read as; "TIMESTAMPTZ" columns are read as text first
    description: str
    nullable: bool = True
    required: bool = True  # a file missing a required column stops the run


@dataclass(frozen=True)
class SourceTable:
    source: str
    table: str
    system: str
    description: str
    grain: str
    columns: tuple[Column, ...]
    optional: bool = False  # the pipeline runs without it (records it as absent)
    event_time: str | None = None  # column that must not be after the landing day
    dedupe_key: tuple[str, ...] = field(default_factory=tuple)

    @property
    def raw_name(self) -> str:
        return f"{self.source}__{self.table}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


C = Column

TABLES: tuple[SourceTable, ...] = (
    SourceTable(
        "crm", "customers", "CRM",
        "Customer master records. A customer may appear again in a later drop when a field "
        "changes (e.g. consent withdrawn); the latest landed version wins.",
        "one row per customer version (customer_id, updated_at)",
        (
            C("customer_id", "VARCHAR", "CRM customer identifier", nullable=False),
            C("email", "VARCHAR", "email as typed (any case, may carry spaces)"),
            C("phone", "VARCHAR", "phone in E.164 (+<country><number>) or national format"),
            C("first_name", "VARCHAR", "first name"),
            C("last_name", "VARCHAR", "last name"),
            C("country", "VARCHAR", "ISO 3166-1 alpha-2 country code"),
            C("zip", "VARCHAR", "postal code"),
            C("created_at", "TIMESTAMPTZ", "account creation time", nullable=False),
            C("updated_at", "TIMESTAMPTZ", "time this version of the record was written",
              nullable=False),
            C("marketing_consent", "VARCHAR",
              "consent to marketing: only a clear yes (true, yes, y, 1, opt-in, granted; any "
              "case) is consent; anything else (false, opt-out, empty, unknown text) is no "
              "consent"),
        ),
        event_time="updated_at",
        dedupe_key=("customer_id", "updated_at"),
    ),
    SourceTable(
        "crm", "orders", "CRM / e-commerce platform",
        "Orders as placed. Amounts are in the order's currency.",
        "one row per order",
        (
            C("order_id", "VARCHAR", "order identifier", nullable=False),
            C("customer_id", "VARCHAR", "buyer's CRM id", nullable=False),
            C("ordered_at", "TIMESTAMPTZ", "order time", nullable=False),
            C("currency", "VARCHAR", "ISO 4217 currency of the amounts", nullable=False),
            C("gross_amount", "DOUBLE", "merchandise value before discount, excl. shipping; "
              "negative on a credit note (not a purchase: its lines are returns)",
              nullable=False),
            C("discount_amount", "DOUBLE", "discount granted on the order (>= 0)"),
            C("coupon_code", "VARCHAR", "coupon used, empty if none"),
            C("shipping_fee", "DOUBLE", "shipping charged to the customer"),
            C("shipping_cost", "DOUBLE", "shipping cost paid by the brand"),
            C("sales_channel", "VARCHAR", "web, app, marketplace or store"),
            C("utm_medium", "VARCHAR",
              "last-touch marketing medium recorded by the shop (cpc, paid_social, display, "
              "email, organic, direct, referral); empty if unknown"),
        ),
        event_time="ordered_at",
        dedupe_key=("order_id",),
    ),
    SourceTable(
        "crm", "order_lines", "CRM / e-commerce platform",
        "Order lines. Unit amounts are in the order's currency. A credit note (an order with a "
        "negative gross amount: a cancellation or return exported as an invoice) has lines with "
        "negative quantities: they are read as returns of the customer's earlier purchase.",
        "one row per (order_id, line_number)",
        (
            C("order_id", "VARCHAR", "order the line belongs to", nullable=False),
            C("line_number", "INTEGER", "line position within the order", nullable=False),
            C("sku", "VARCHAR", "product SKU", nullable=False),
            C("category", "VARCHAR", "product category", nullable=False),
            C("quantity", "INTEGER", "units (never 0; negative on a credit note's lines)",
              nullable=False),
            C("unit_price", "DOUBLE", "list price per unit", nullable=False),
            C("unit_cost", "DOUBLE", "cost of goods per unit"),
        ),
        dedupe_key=("order_id", "line_number"),
    ),
    SourceTable(
        "crm", "support_tickets", "CRM / help desk",
        "Customer support tickets.",
        "one row per ticket",
        (
            C("ticket_id", "VARCHAR", "ticket identifier", nullable=False),
            C("customer_id", "VARCHAR", "customer who raised it", nullable=False),
            C("created_at", "TIMESTAMPTZ", "ticket time", nullable=False),
            C("topic", "VARCHAR", "delivery, product, return, payment or other"),
            C("handle_minutes", "DOUBLE", "agent minutes spent"),
        ),
        optional=True,
        event_time="created_at",
        dedupe_key=("ticket_id",),
    ),
    SourceTable(
        "web", "events", "web analytics",
        "Web and app events. customer_id is set when the visitor was logged in; "
        "anonymous_id is the device cookie.",
        "one row per event",
        (
            C("event_id", "VARCHAR", "event identifier", nullable=False),
            C("anonymous_id", "VARCHAR", "device / cookie id", nullable=False),
            C("customer_id", "VARCHAR", "CRM id when logged in, else empty"),
            C("session_id", "VARCHAR", "session identifier", nullable=False),
            C("event_at", "TIMESTAMPTZ", "event time", nullable=False),
            C("event_type", "VARCHAR",
              "page_view, add_to_cart, checkout_start or purchase", nullable=False),
            C("page_type", "VARCHAR",
              "home, category, product, reviews, shipping_returns, guarantee, comparison, "
              "about, sale, cart or checkout"),
            C("utm_source", "VARCHAR", "campaign source of the session"),
            C("utm_medium", "VARCHAR", "campaign medium of the session"),
            C("utm_campaign", "VARCHAR", "campaign name of the session"),
            C("device", "VARCHAR", "desktop, mobile or tablet"),
        ),
        optional=True,
        event_time="event_at",
        dedupe_key=("event_id",),
    ),
    SourceTable(
        "ads", "creatives", "ad platforms",
        "Creative catalogue with the persuasion theme each creative leads with.",
        "one row per creative",
        (
            C("creative_id", "VARCHAR", "creative identifier", nullable=False),
            C("channel", "VARCHAR", "meta, google, tiktok or display", nullable=False),
            C("format", "VARCHAR", "image, video, carousel or search_text"),
            C("persuasion_theme", "VARCHAR",
              "proof, identity, anxiety, convenience, value or performance", nullable=False),
        ),
        optional=True,
        dedupe_key=("creative_id",),
    ),
    SourceTable(
        "ads", "spend", "ad platforms",
        "Daily spend and delivery by channel, campaign and creative, in the reporting currency.",
        "one row per (spend_date, channel, campaign_id, creative_id)",
        (
            C("spend_date", "DATE", "day of delivery", nullable=False),
            C("channel", "VARCHAR", "ad channel", nullable=False),
            C("campaign_id", "VARCHAR", "campaign identifier", nullable=False),
            C("creative_id", "VARCHAR", "creative identifier", nullable=False),
            C("spend", "DOUBLE", "spend in the reporting currency", nullable=False),
            C("impressions", "BIGINT", "impressions delivered"),
            C("clicks", "BIGINT", "clicks"),
        ),
        optional=True,
        event_time="spend_date",
        dedupe_key=("spend_date", "channel", "campaign_id", "creative_id"),
    ),
    SourceTable(
        "ads", "exposures", "ad platforms (user-level log or clean room)",
        "User-level exposures per day, matched to CRM customers.",
        "one row per (exposure_date, customer_id, channel, creative_id)",
        (
            C("exposure_date", "DATE", "day of exposure", nullable=False),
            C("customer_id", "VARCHAR", "matched CRM customer", nullable=False),
            C("channel", "VARCHAR", "ad channel", nullable=False),
            C("creative_id", "VARCHAR", "creative shown", nullable=False),
            C("impressions", "INTEGER", "impressions that day", nullable=False),
            C("clicks", "INTEGER", "clicks that day"),
        ),
        optional=True,
        event_time="exposure_date",
        dedupe_key=("exposure_date", "customer_id", "channel", "creative_id"),
    ),
    SourceTable(
        "returns", "returns", "returns / RMA system",
        "Returns and refunds. A refund larger than the line's value is capped at it (stated "
        "repair rule) and recorded in the quarantine table as repaired.",
        "one row per return",
        (
            C("return_id", "VARCHAR", "return identifier", nullable=False),
            C("order_id", "VARCHAR", "order returned", nullable=False),
            C("sku", "VARCHAR", "SKU returned", nullable=False),
            C("returned_at", "TIMESTAMPTZ", "time the return was processed", nullable=False),
            C("quantity", "INTEGER", "units returned (must be > 0)", nullable=False),
            C("refund_amount", "DOUBLE", "amount refunded, in the order's currency",
              nullable=False),
            C("reason", "VARCHAR", "size, damaged, not_as_described, changed_mind or other"),
            C("return_shipping_cost", "DOUBLE", "return shipping paid by the brand"),
        ),
        optional=True,
        event_time="returned_at",
        dedupe_key=("return_id",),
    ),
    SourceTable(
        "fx", "rates", "finance",
        "Daily FX rates: one unit of `currency` is worth `rate_to_reporting` units of the "
        "reporting currency. Needed only when orders come in several currencies.",
        "one row per (rate_date, currency)",
        (
            C("rate_date", "DATE", "day the rate applies to", nullable=False),
            C("currency", "VARCHAR", "ISO 4217 code", nullable=False),
            C("rate_to_reporting", "DOUBLE", "reporting-currency value of one unit",
              nullable=False),
        ),
        optional=True,
        event_time="rate_date",
        dedupe_key=("rate_date", "currency"),
    ),
    SourceTable(
        "marketing", "activation_log", "activation / marketing automation",
        "Past audience activations: who was put in which segment audience on which day, and "
        "whether they were sent (treated) or kept out as the segment's holdout. Holdout "
        "customers are listed too, so incrementality can compare the two groups. The group "
        "column is called test_group, not group: GROUP is a reserved word in SQL.",
        "one row per (activation_date, customer_id, audience)",
        (
            C("activation_date", "DATE", "day the audience was activated (sent)", nullable=False),
            C("customer_id", "VARCHAR", "CRM customer in the audience", nullable=False),
            C("segment", "VARCHAR", "decision segment the audience was built from",
              nullable=False),
            C("audience", "VARCHAR", "audience name, <segment>_<channel>", nullable=False),
            C("channel", "VARCHAR", "activation channel (email, meta, google, tiktok, display)",
              nullable=False),
            C("test_group", "VARCHAR",
              "treated (sent) or holdout (kept out by the segment's hash-based holdout)",
              nullable=False),
        ),
        optional=True,
        event_time="activation_date",
        dedupe_key=("activation_date", "customer_id", "audience"),
    ),
)

BY_NAME: dict[str, SourceTable] = {t.raw_name: t for t in TABLES}
REQUIRED_TABLES = tuple(t.raw_name for t in TABLES if not t.optional)
REPORTING_CURRENCY = "EUR"

ACTIVATION_GROUPS = ("treated", "holdout")

PERSUASION_THEMES = ("proof", "identity", "anxiety", "convenience", "value", "performance")
TRUST_PAGE_TYPES = ("reviews", "shipping_returns", "guarantee", "comparison")


def table(raw_name: str) -> SourceTable:
    return BY_NAME[raw_name]
