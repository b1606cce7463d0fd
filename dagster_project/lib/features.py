"""The feature and label vocabulary shared by dbt marts and the Python layers.

`customer_features` (dbt mart) has one row per (as_of_date, customer_id), point-in-time:
every feature at as_of_date D uses only rows with event time before the end of D that had
landed (file date) by D. `customer_labels` has one row per (as_of_date, cutoff_date,
customer_id): outcomes in windows strictly after the cutoff, ending on or before as_of_date.

Each feature carries a short phrase a marketer can read; a driver is shown as the phrase
plus an arrow for the sign of its contribution ("recent reviews-page views ↑").
"""

from __future__ import annotations

THEMES = ("proof", "identity", "anxiety", "convenience", "value", "performance")

# name -> marketer-readable phrase
FEATURES: dict[str, str] = {
    "customer_age_days": "time since account creation",
    "orders_7d": "orders in the last 7 days",
    "orders_30d": "orders in the last 30 days",
    "orders_90d": "orders in the last 90 days",
    "orders_180d": "orders in the last 180 days",
    "orders_365d": "orders in the last year",
    "orders_lifetime": "orders ever",
    "revenue_30d": "net revenue, last 30 days",
    "revenue_90d": "net revenue, last 90 days",
    "revenue_180d": "net revenue, last 180 days",
    "revenue_365d": "net revenue, last year",
    "revenue_lifetime": "net revenue ever",
    "aov_lifetime": "average order value",
    "last_order_value": "value of the last order",
    "days_since_last_order": "days since the last order",
    "days_since_first_order": "days since the first order",
    "repeat_frequency": "repeat orders (orders beyond the first)",
    "recency_span_days": "days between first and last order",
    "recency_ratio": "last order late in the customer's life (recency / age)",
    "orders_per_month_active": "orders per month since the first order",
    "mean_interorder_days": "typical days between orders",
    "std_interorder_days": "irregularity of the buying rhythm",
    "overdue_ratio": "days since last order relative to usual rhythm",
    "days_first_touch_to_first_order": "days from first visit to first order",
    "days_first_to_second_order": "days from first to second order",
    "discount_order_share": "share of orders with a discount",
    "discount_rate": "discount as share of gross spend",
    "coupon_orders_365d": "coupon orders in the last year",
    "revenue_trend": "recent spend vs the yearly average",
    "category_count": "number of categories bought",
    "top_category_share": "share of spend in the favourite category",
    "return_rate_365d": "share of units returned, last year",
    "refund_share_365d": "refunds as share of spend, last year",
    "returns_365d": "returns in the last year",
    "support_tickets_90d": "support tickets in the last 90 days",
    "support_minutes_365d": "support minutes in the last year",
    "contribution_margin_365d": "contribution margin, last year",
    "margin_per_order_365d": "contribution margin per order, last year",
    "unpaid_order_share": "share of orders with no paid touch",
    "paid_orders_365d": "orders from paid media in the last year",
    "sessions_7d": "web sessions in the last 7 days",
    "sessions_30d": "web sessions in the last 30 days",
    "sessions_90d": "web sessions in the last 90 days",
    "days_since_last_visit": "days since the last visit",
    "product_views_7d": "product-page views in the last 7 days",
    "product_views_30d": "product-page views in the last 30 days",
    "add_to_cart_7d": "add-to-carts in the last 7 days",
    "add_to_cart_30d": "add-to-carts in the last 30 days",
    "checkout_starts_30d": "checkouts started in the last 30 days",
    "abandoned_checkouts_30d": "checkouts abandoned in the last 30 days",
    "reviews_views_30d": "recent reviews-page views",
    "guarantee_views_30d": "recent guarantee-page views",
    "shipping_returns_views_30d": "recent shipping & returns page views",
    "comparison_views_30d": "recent comparison-page views",
    "about_views_90d": "brand-story page views (90 days)",
    "sale_views_90d": "sale-page views (90 days)",
    "trust_views_90d": "trust-content views (90 days)",
    "trust_view_share_90d": "share of page views on trust content",
    "impressions_30d": "ad impressions in the last 30 days",
    "clicks_30d": "ad clicks in the last 30 days",
    "impressions_90d": "ad impressions in the last 90 days",
    "clicks_90d": "ad clicks in the last 90 days",
    "exposure_days_30d": "days with ad exposure, last 30 days",
    "ad_ctr_90d": "ad click-through rate (90 days)",
    **{f"clicks_{t}_90d": f"clicks on {t}-themed creatives (90 days)" for t in THEMES},
    **{f"impressions_{t}_90d": f"impressions of {t}-themed creatives (90 days)" for t in THEMES},
    # a year of theme-page views and creative response: enough evidence per customer to tell
    # which persuasion theme convinces them (30-day counts are mostly zeros)
    "reviews_views_365d": "reviews-page views (year)",
    "about_views_365d": "brand-story page views (year)",
    "guarantee_views_365d": "guarantee-page views (year)",
    "shipping_returns_views_365d": "shipping & returns page views (year)",
    "sale_views_365d": "sale-page views (year)",
    "comparison_views_365d": "comparison-page views (year)",
    **{f"clicks_{t}_365d": f"clicks on {t}-themed creatives (year)" for t in THEMES},
    **{f"impressions_{t}_365d": f"impressions of {t}-themed creatives (year)" for t in THEMES},
}

FEATURE_COLUMNS: tuple[str, ...] = tuple(FEATURES)

# Computed in Python from customer_features, not by dbt (lib/btyd.py, add_features): BG/NBD
# fitted at each date on every customer's order history, each customer's P(alive) and
# P(purchase) over three horizons. The models see FEATURE_COLUMNS and these.
BGNBD_FEATURES: dict[str, str] = {
    "bgnbd_p_alive": "still an active buyer (BG/NBD)",
    "bgnbd_p_purchase_7d": "expected to buy within 7 days (BG/NBD)",
    "bgnbd_p_purchase_30d": "expected to buy within 30 days (BG/NBD)",
    "bgnbd_p_purchase_90d": "expected to buy within 90 days (BG/NBD)",
}
MODEL_FEATURE_COLUMNS: tuple[str, ...] = (*FEATURE_COLUMNS, *BGNBD_FEATURES)

# Labels in customer_labels. NULL means "not defined for this customer at this cutoff"
# (outside the target's population) or "window not yet complete at as_of_date".
LABELS: dict[str, str] = {
    "purchase_7d": "any order placed in (cutoff, cutoff + 7 days]",
    "purchase_30d": "any order placed in (cutoff, cutoff + 30 days]",
    "repeat_90d": "for customers with exactly one order by the cutoff: a second order in "
    "(cutoff, cutoff + 90 days]",
    "cross_sell_60d": "for customers with at least one order: an order in (cutoff, cutoff + 60 "
    "days] containing a category they had never bought before the cutoff",
    "churn_90d": "for customers with an order in the 365 days up to the cutoff: no order in "
    "(cutoff, cutoff + 90 days]",
    "discount_next_order": "for customers who order in (cutoff, cutoff + 90 days]: their first "
    "order after the cutoff carries a discount",
    "return_60d": "for customers with at least one order: an order placed in (cutoff, cutoff + "
    "60 days] has a return processed in that same window",
}
LABEL_HORIZON_DAYS: dict[str, int] = {
    "purchase_7d": 7,
    "purchase_30d": 30,
    "repeat_90d": 90,
    "cross_sell_60d": 60,
    "churn_90d": 90,
    "discount_next_order": 90,
    "return_60d": 60,
}


def driver_phrase(feature: str, contribution: float) -> str:
    """Marketer-readable driver: the feature's phrase and the sign of its push."""
    arrow = "↑" if contribution >= 0 else "↓"
    phrase = FEATURES.get(feature) or BGNBD_FEATURES.get(feature) or feature.replace("_", " ")
    return f"{phrase} {arrow}"
