"""The latent world: customers' traits, the product catalogue, the ad plan and the calendar.

Everything here is drawn once from the seed before the day loop starts. The behavioural
links the pipeline must recover are written as plain formulas in ``hazard`` and in the
day loop (generate.py); the traits themselves go to ``<truth>/customers.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..lib.contract import PERSUASION_THEMES
from .formatting import SECONDS_PER_DAY, ids

BUYING_MODES = ("replenisher", "occasional", "one_off")
COUNTRIES = np.array(["DE", "FR", "NL", "ES", "IT", "AT", "BE", "US", "GB"])
COUNTRY_P = np.array([0.30, 0.14, 0.09, 0.08, 0.08, 0.04, 0.04, 0.12, 0.11])
CURRENCIES = np.array(["EUR", "USD", "GBP"])
COUNTRY_CURRENCY = np.array([0, 0, 0, 0, 0, 0, 0, 1, 2])
COUNTRY_DIAL = np.array(["49", "33", "31", "34", "39", "43", "32", "1", "44"])

CATEGORIES = ("skincare", "haircare", "supplements", "apparel", "footwear", "accessories",
              "home", "electronics")
# median list price (EUR), gross margin range, return-rate factor
CATEGORY_PRICE = np.array([28.0, 22.0, 35.0, 55.0, 95.0, 30.0, 45.0, 120.0])
CATEGORY_RETURN = np.array([0.3, 0.3, 0.2, 1.6, 1.8, 0.8, 0.7, 0.9])
SKUS_PER_CATEGORY = 30

# page types: browse pages first, then the funnel pages
PAGE_TYPES = np.array(["home", "category", "product", "reviews", "shipping_returns", "guarantee",
                       "comparison", "about", "sale", "cart", "checkout"])
BROWSE_PAGE_WEIGHTS = np.array([0.18, 0.2, 0.34, 0.05, 0.04, 0.03, 0.04, 0.04, 0.08])
# persuasion driver -> the page it pulls the visitor to
DRIVER_PAGE = np.array([3, 7, 5, 4, 8, 6])  # proof, identity, anxiety, convenience, value, performance
TRUST_PAGES = np.array([3, 4, 5, 6])

CHANNELS = ("meta", "google", "tiktok", "display")
CHANNEL_MEDIUM = np.array(["paid_social", "cpc", "paid_social", "display"])
CHANNEL_SOURCE = np.array(["facebook", "google", "tiktok", "dv360"])
CHANNEL_FORMATS = (("image", "video", "carousel"), ("search_text",), ("video",),
                   ("image", "carousel"))
CREATIVES_PER_CHANNEL = 12
CAMPAIGNS_PER_CHANNEL = 3
# planted response curves: daily spend per 1,000 customers (EUR) -> share of customers
# reached per day, Hill(spend) = reach_max * s^shape / (s^shape + half_sat^shape)
CURVE_REACH_MAX = np.array([0.016, 0.012, 0.010, 0.012])
CURVE_HALF_SAT = np.array([6.0, 4.0, 3.0, 5.0])
CURVE_SHAPE = np.array([1.4, 1.1, 1.8, 1.0])
CURVE_MEAN_SPEND = np.array([5.0, 4.0, 2.5, 3.0])  # average daily spend per 1,000 customers
CURVE_PAID_WEIGHT = np.array([1.0, 1.3, 0.8, 0.5])  # paid-order pull per unit of reach

FIRST_NAMES = np.array(["Anna", "Lena", "Marie", "Sophie", "Julia", "Laura", "Emma", "Mia",
                        "Paul", "Lukas", "Jonas", "Leon", "Felix", "Max", "Noah", "Elias",
                        "Lucas", "Chloe", "Hugo", "Louis", "Sara", "Marco", "Giulia", "Pablo",
                        "Lucia", "Daan", "Sem", "Olivia", "James", "Oliver"])
LAST_NAMES = np.array(["Muller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner",
                       "Becker", "Martin", "Bernard", "Dubois", "Rossi", "Russo", "Garcia",
                       "Martinez", "Jansen", "DeVries", "Smith", "Jones", "Brown", "Taylor",
                       "Wilson", "Peeters", "Huber", "Bauer", "Lopez", "Ferrari", "Moreau"])
EMAIL_DOMAINS = np.array(["gmail.com", "web.de", "gmx.de", "outlook.com", "yahoo.com",
                          "icloud.com", "orange.fr", "hotmail.com"])


@dataclass
class Customers:
    n: int
    ids: np.ndarray
    created_day: np.ndarray  # int days since epoch
    created_sec: np.ndarray
    country: np.ndarray  # index into COUNTRIES
    currency: np.ndarray  # index into CURRENCIES
    mode: np.ndarray  # index into BUYING_MODES
    cycle_days: np.ndarray
    base: np.ndarray  # daily purchase hazard scale
    dropout: np.ndarray
    driver: np.ndarray  # index into PERSUASION_THEMES
    discount: np.ndarray
    returns: np.ndarray
    ad_resp: np.ndarray
    organic: np.ndarray
    trust: np.ndarray
    consent: np.ndarray
    media_share: np.ndarray  # share of the hazard that follows ad pressure
    targeting: np.ndarray  # how often ad platforms reach the customer
    visit_rate: np.ndarray  # daily browse-session rate
    login_rate: np.ndarray
    n_devices: np.ndarray
    fav_category: np.ndarray
    organic_inevitable: np.ndarray
    margin_destroyer: np.ndarray
    creative_resistant: np.ndarray
    retarget: np.ndarray  # heavily exposed in the last weeks, behaves normally
    alive0: np.ndarray
    last0: np.ndarray  # day of last purchase before start (or created day)


def draw_customers(rng: np.random.Generator, n: int, start: int, end: int,
                   archetype_share: float = 0.03) -> Customers:
    span = end - start + 1
    pre = rng.random(n) < 0.55
    created_day = np.where(pre, start - 1 - rng.integers(0, 1500, n), start + rng.integers(0, span, n))
    created_sec = created_day * SECONDS_PER_DAY + rng.integers(6 * 3600, 23 * 3600, n)

    country = rng.choice(len(COUNTRIES), n, p=COUNTRY_P)
    mode = rng.choice(3, n, p=[0.18, 0.57, 0.25])
    cycle = np.where(mode == 0, np.exp(rng.normal(np.log(45), 0.35, n)),
                     np.exp(rng.normal(np.log(120), 0.4, n)))
    annual = np.select(
        [mode == 0, mode == 1],
        [1.5 * 365.0 / cycle * np.exp(rng.normal(0, 0.25, n)), rng.gamma(0.9, 5.0, n)],
        rng.gamma(2.0, 0.8, n),
    )
    dropout = np.select(
        [mode == 0, mode == 1],
        [rng.beta(1, 30, n), rng.beta(2, 12, n)],
        rng.beta(8, 4, n),
    )
    driver = rng.integers(0, len(PERSUASION_THEMES), n)
    discount = rng.beta(2, 5, n)
    returns = np.minimum(rng.beta(1.6, 9, n), 0.45)
    ad_resp = rng.beta(2, 4, n)
    organic = rng.beta(2.5, 2.5, n) * 0.75
    trust = rng.beta(2, 5, n)
    consent = rng.random(n) < 0.85
    targeting = np.where(rng.random(n) < 0.25, 0.0, np.minimum(rng.lognormal(0, 0.5, n), 2.5))
    visit_rate = rng.lognormal(np.log(3.0 / 365), 0.6, n) * (1 + 1.5 * trust)
    login_rate = rng.beta(6, 4, n)
    n_devices = rng.choice([1, 2, 3], n, p=[0.5, 0.35, 0.15])
    fav_category = rng.integers(0, len(CATEGORIES), n)

    # planted archetypes: pre-existing customers only, mutually exclusive
    eligible = np.flatnonzero(pre & (created_day < start - 30))
    k = round(archetype_share * n)
    pick = rng.permutation(eligible)[: 3 * k]
    oi = np.zeros(n, bool); md = np.zeros(n, bool); cr = np.zeros(n, bool)
    oi[pick[:k]] = True
    md[pick[k:2 * k]] = True
    cr[pick[2 * k:3 * k]] = True

    # organic_inevitable: frequent, never paid, ads do nothing
    mode[oi] = 0
    cycle[oi] = np.exp(rng.normal(np.log(24), 0.2, oi.sum()))
    annual[oi] = 365.0 / cycle[oi]
    dropout[oi] = 0.0
    organic[oi] = 1.0
    ad_resp[oi] = rng.uniform(0.0, 0.02, oi.sum())
    # margin_destroyer: steady buyers with deep discounts, most lines returned
    mode[md] = 0
    cycle[md] = np.exp(rng.normal(np.log(38), 0.2, md.sum()))
    annual[md] = 365.0 / cycle[md]
    dropout[md] = 0.0
    discount[md] = rng.uniform(0.9, 1.0, md.sum())
    returns[md] = rng.uniform(0.7, 0.9, md.sum())
    # creative_resistant: ordinary buyers who ignore ads
    ad_resp[cr] = 0.0
    annual[cr] = np.maximum(annual[cr], 2.0)
    dropout[cr] = np.minimum(dropout[cr], 0.1)
    targeting[cr] = np.maximum(targeting[cr], 1.0)

    media_share = np.clip(0.9 * (1 - organic) * (0.5 + 0.5 * ad_resp), 0, 0.9)
    # a retargeting pool: ordinary customers also heavily exposed at the end of the run, so
    # heavy exposure alone does not single out the creative-resistant
    retarget = ~(oi | md | cr) & (rng.random(n) < 0.04)
    alive0 = np.where(pre, rng.random(n) > start_dropout_share(mode), True)
    alive0 |= oi | md | cr
    since = np.minimum(start - created_day, (rng.random(n) * np.where(mode == 0, cycle, 200)).astype(np.int64))
    last0 = np.where(pre, start - 1 - np.maximum(since, 0), created_day)

    return Customers(
        n=n, ids=ids("C", np.arange(1, n + 1), 8), created_day=created_day,
        created_sec=created_sec, country=country, currency=COUNTRY_CURRENCY[country], mode=mode,
        cycle_days=cycle, base=annual / 365.0, dropout=dropout, driver=driver,
        discount=discount, returns=returns, ad_resp=ad_resp, organic=organic, trust=trust,
        consent=consent, media_share=media_share, targeting=targeting, visit_rate=visit_rate,
        login_rate=login_rate, n_devices=n_devices, fav_category=fav_category,
        organic_inevitable=oi, margin_destroyer=md, creative_resistant=cr, retarget=retarget, alive0=alive0,
        last0=last0,
    )


@dataclass
class Catalogue:
    sku: np.ndarray  # SKU codes, index = category * SKUS_PER_CATEGORY + k
    category: np.ndarray
    price: np.ndarray  # EUR list price
    cost: np.ndarray


def draw_catalogue(rng: np.random.Generator) -> Catalogue:
    n = len(CATEGORIES) * SKUS_PER_CATEGORY
    category = np.repeat(np.arange(len(CATEGORIES)), SKUS_PER_CATEGORY)
    price = np.round(CATEGORY_PRICE[category] * rng.lognormal(0, 0.35, n)) - 0.01
    price = np.maximum(price, 4.99)
    margin = rng.uniform(0.40, 0.70, n)
    cost = np.round(price * (1 - margin), 2)
    sku = ids("SKU-", np.arange(n) + 1000, 5)
    return Catalogue(sku=sku, category=category, price=price, cost=cost)


@dataclass
class AdPlan:
    creative_ids: np.ndarray
    creative_channel: np.ndarray
    creative_format: np.ndarray
    creative_theme: np.ndarray
    creative_campaign: np.ndarray  # campaign id strings
    spend: np.ndarray  # [day_offset, channel] EUR, for days start .. end + horizon
    creative_weight: np.ndarray  # [day_offset, creative] share of its channel's spend
    reach: np.ndarray  # [day_offset, channel] Hill(spend) share reached per day
    paid_pull: np.ndarray  # [day_offset] relative paid-order pressure, mean 1 over the run


def hill(spend_per_k: np.ndarray) -> np.ndarray:
    s = np.maximum(spend_per_k, 0.0)
    return CURVE_REACH_MAX * s**CURVE_SHAPE / (s**CURVE_SHAPE + CURVE_HALF_SAT**CURVE_SHAPE)


def draw_ad_plan(rng: np.random.Generator, n_customers: int, n_days: int, n_run_days: int) -> AdPlan:
    n_ch = len(CHANNELS)
    ch = np.repeat(np.arange(n_ch), CREATIVES_PER_CHANNEL)
    n_cr = len(ch)
    fmt = np.array([CHANNEL_FORMATS[c][rng.integers(0, len(CHANNEL_FORMATS[c]))] for c in range(n_ch)
                    for _ in range(CREATIVES_PER_CHANNEL)])
    theme = rng.integers(0, len(PERSUASION_THEMES), n_cr)
    campaign_no = ch * CAMPAIGNS_PER_CHANNEL + rng.integers(0, CAMPAIGNS_PER_CHANNEL, n_cr)
    campaign = ids("CMP-", campaign_no + 1, 3)
    creative_ids = ids("CR-", np.arange(n_cr) + 1, 4)

    t = np.arange(n_days)
    weekly = 1 + 0.15 * np.sin(2 * np.pi * t / 7)[:, None]
    # flighting: multi-week bursts and pauses so spend spans the curve
    flight = np.exp(rng.normal(0, 0.55, (n_days // 14 + 1, n_ch))).repeat(14, axis=0)[:n_days]
    noise = np.exp(rng.normal(0, 0.25, (n_days, n_ch)))
    per_k = CURVE_MEAN_SPEND * weekly * flight * noise
    spend = np.round(per_k * n_customers / 1000.0, 2)
    reach = hill(per_k)
    pull = (reach * CURVE_PAID_WEIGHT).sum(axis=1)
    pull = pull / pull[:n_run_days].mean()

    w = rng.gamma(1.0, 1.0, (n_days // 7 + 1, n_cr)).repeat(7, axis=0)[:n_days]
    w = np.where(rng.random((n_days // 7 + 1, n_cr)).repeat(7, axis=0)[:n_days] < 0.2, 0.0, w)
    w += 1e-6
    for c in range(n_ch):
        cols = ch == c
        w[:, cols] /= w[:, cols].sum(axis=1, keepdims=True)
    return AdPlan(creative_ids, ch, fmt, theme, campaign, spend, w, reach, pull)


def draw_calendar(rng: np.random.Generator, first_day: int, n_days: int):
    """Seasonality multiplier and promo flags for days first_day .. first_day + n_days - 1."""
    days = first_day + np.arange(n_days)
    dt = days.astype("datetime64[D]")
    doy = (dt - dt.astype("datetime64[Y]")).astype(np.int64)
    month = dt.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dow = (days + 3) % 7  # 0 = Monday
    season = (1 + 0.12 * np.cos(2 * np.pi * (doy - 340) / 365.0)) * np.where(dow >= 5, 1.1, 0.96)
    promo = np.zeros(n_days, bool)
    # Black Friday to Cyber Monday
    dom = (dt - dt.astype("datetime64[M]")).astype(np.int64) + 1
    promo |= (month == 11) & (dom >= 24) & (dom <= 30) & (dow >= 4)
    promo |= (month == 12) & (dom <= 2) & (dow == 0)
    # a three-day sale roughly every five weeks
    k = 0
    while k < n_days:
        k += int(rng.integers(25, 45))
        promo[k:k + 3] = True
    season = season * np.where(promo, 1.15, 1.0)
    return season, promo


# Promo days multiply a customer's purchase hazard by 1 + PROMO_HAZARD_GAIN x discount
# sensitivity; a margin destroyer's order uses a discount with MARGIN_DESTROYER_DISCOUNT.
PROMO_HAZARD_GAIN = 2.5
MARGIN_DESTROYER_DISCOUNT = 0.95


def start_dropout_share(mode: np.ndarray) -> np.ndarray:
    """Share of the customers created before the run who have already dropped out at its
    start, by buying mode (the planted archetypes aside: they are all alive)."""
    return np.select([mode == 0, mode == 1], [0.15, 0.4], 0.75)


def discount_probability(ds: np.ndarray, promo: bool | np.ndarray) -> np.ndarray:
    """P(an order uses a discount) for discount sensitivity ``ds``, on a promo day or not
    (the margin destroyers' MARGIN_DESTROYER_DISCOUNT aside). The only trace ``ds`` leaves in the data besides a
    promo-day hazard gain: see scripts/model_ceiling.py's discount observer."""
    return np.where(promo, 0.25 + 0.6 * ds, 0.03 + 0.45 * ds**1.5)


# ----------------------------------------------------------------------------- activations
# Past activation waves (DESIGN §10): every ACTIVATION_EVERY days the brand activated its
# segment audiences, keeping a hash-based holdout out of each. PLANTED TRUE EFFECT: a treated
# customer's purchase hazard is multiplied by (1 + effect) on the ACTIVATION_EFFECT_DAYS days
# after the activation day. One segment has no effect (activating the lookalike seed list
# itself changes nothing), so a measurement that always finds a lift is caught. Planted
# organic inevitables get no effect in any segment (they buy anyway; ads do nothing).
ACTIVATION_SEGMENTS = ("likely_to_churn", "ready_to_repeat", "high_intent_low_trust",
                       "deal_triggered", "high_ltv_lookalike_seed")  # priority order
SEGMENT_EFFECTS = np.array([0.60, 0.30, 0.50, 0.40, 0.0])
SEGMENT_CHANNELS = (("email", "meta"), ("email", "google"), ("email", "meta"),
                    ("email", "google"), ("meta",))
ACTIVATION_FIRST_OFFSET = 21  # first wave this many days after the start (history to act on)
ACTIVATION_EVERY = 7
ACTIVATION_EFFECT_DAYS = 30
# contact policy: a customer activated (either group) is not activated again for this long, so
# no effect window overlaps another activation of the same customer
ACTIVATION_COOLDOWN_DAYS = 42


def activation_segment(c: Customers, day: int, last: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Segment index (into ACTIVATION_SEGMENTS) of each customer on ``day``, -1 for none.

    A deliberately simple rule on the latent state, first match wins:
    lapsing valuable -> likely_to_churn; due to buy again -> ready_to_repeat; trust-friction
    heavy web visitors -> high_intent_low_trust; discount-sensitive -> deal_triggered; steady
    high-value buyers -> high_ltv_lookalike_seed.
    """
    rec = (day - last).astype(np.float64)
    gap = np.where(c.mode == 0, c.cycle_days, 120.0)
    valuable = c.base >= 2.0 / 365
    bought = last > c.created_day
    rules = [
        valuable & bought & (rec > 1.5 * gap) & (rec <= 365),
        bought & (rec >= 0.6 * gap) & (rec <= 1.3 * gap),
        (c.trust >= 0.40) & (c.visit_rate >= 4.0 / 365),
        c.discount >= 0.40,
        valuable & bought & (rec <= gap),
    ]
    seg = np.select(rules, np.arange(len(rules)), -1)
    return np.where(eligible, seg, -1)
