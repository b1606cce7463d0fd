"""Day-by-day simulation of the shop, vectorised over customers, streamed to daily CSV drops.

Purchases follow a known daily hazard per customer (``World.hazard``): traits x buying
cycle (time since last purchase) x season/promo x ad pressure (Hill curves of spend) x
recent ad clicks, switched off once a customer has dropped out (BG/NBD-like: after each
purchase the customer becomes inactive with probability ``dropout``). The same function
gives the planted truth ``p_purchase_7d/30d`` at weekly cutoffs.

Only the day loop is a Python loop; customers, orders and events are numpy arrays.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..lib.contract import BY_NAME, PERSUASION_THEMES, TABLES
from ..lib.measurement import HOLDOUT_SHARE, holdout_assignment
from . import world as W
from .formatting import SECONDS_PER_DAY, S, ids
from .messiness import KINDS, DefectLog, Messiness, render_file

GENERATOR_VERSION = "1.0.0"
EPOCH = date(1970, 1, 1)
MEDIA = np.array(["", "organic", "direct", "email", "referral", "cpc", "paid_social", "display"], dtype=S)
M_EMPTY, M_ORGANIC, M_DIRECT, M_EMAIL, M_REFERRAL = 0, 1, 2, 3, 4
CHANNEL_MEDIUM_CODE = np.array([6, 5, 6, 7])  # meta, google, tiktok, display
SALES_CHANNELS = np.array(["web", "app", "marketplace", "store"], dtype=S)
TOPICS = np.array(["delivery", "product", "return", "payment", "other"], dtype=S)
REASONS = np.array(["size", "damaged", "not_as_described", "changed_mind", "other"], dtype=S)
DEVICES = np.array(["desktop", "mobile", "tablet"], dtype=S)
HOUR_P = np.array([1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2, 3, 4, 4.5, 5, 5.5, 5, 4.5, 4.5, 5, 5.5, 6.5,
                   7.5, 8, 7, 4.5, 2.5])
HOUR_P = HOUR_P / HOUR_P.sum()
CLICK_DECAY = 0.75  # daily decay of the hazard lift after an ad click
CLICK_GAIN = 3.0  # hazard lift the day after a click, times ad responsiveness
TRUTH_HORIZON = 30
CREATIVE_RESISTANT_WINDOW = 30
TABLE_FLAGS = {"web": ("web__events",), "ads": ("ads__creatives", "ads__spend", "ads__exposures"),
               "returns": ("returns__returns",), "support": ("crm__support_tickets",),
               "fx": ("fx__rates",), "activation": ("marketing__activation_log",)}


TRUTH_FILES = ("customers.parquet", "purchase_probability.parquet", "defects.parquet", "calendar.parquet",
               "channel_curves.parquet", "segment_effects.parquet", "summary.json")
TRUTH_PP_SCHEMA = pa.schema([("customer_id", pa.string()), ("cutoff_date", pa.date32()),
                             ("p_purchase_7d", pa.float64()), ("p_purchase_30d", pa.float64()),
                             ("alive", pa.bool_()), ("p_alive_observed", pa.float64()),
                             ("p_purchase_30d_observed", pa.float64())])
# Log-likelihood ratio (alive vs dropped out) of a day with a browse visit: a dropped-out
# customer still browses, at DEAD_VISIT_SHARE of their visit rate (Simulation.run).
DEAD_VISIT_SHARE = 0.4


def _day(d: date) -> int:
    return (d - EPOCH).days


def _date(day: int) -> date:
    return EPOCH + timedelta(days=int(day))


@dataclass
class Config:
    customers: int = 5000
    start: date | None = None
    end: date | None = None
    seed: int = 42
    messiness: float = 0.01
    out: Path = Path("data/raw")
    truth: Path = Path("data/truth")
    web: bool = True
    ads: bool = True
    returns: bool = True
    support: bool = True
    fx: bool = True
    activation: bool = True  # past activation waves with holdouts and a planted effect
    activation_holdout: float = HOLDOUT_SHARE
    missing_column: str | None = None  # "crm__orders:gross_amount"
    late_share: float = 0.03  # rows landing 1-5 days after their event day
    truth_weeks: int = 26
    anonymous_visitors: float = 1.0  # pure-anonymous visitors per customer
    archetype_share: float = 0.03
    clean: bool = True  # delete the CSVs and truth files of an earlier run first

    def resolved(self) -> Config:
        end = self.end or (datetime.now(UTC).date() - timedelta(days=1))
        start = self.start or (end - timedelta(days=729))  # two years
        if start > end:
            raise ValueError(f"start {start} is after end {end}")
        if self.missing_column:
            tname, _, col = self.missing_column.partition(":")
            if tname not in BY_NAME or col not in BY_NAME[tname].column_names:
                raise ValueError(f"--missing-column {self.missing_column!r}: expected table:column from the contract")
        return Config(**{**asdict(self), "start": start, "end": end,
                         "out": Path(self.out), "truth": Path(self.truth)})

    def enabled(self, raw_name: str) -> bool:
        return not any(raw_name in tabs and not getattr(self, flag) for flag, tabs in TABLE_FLAGS.items())


class World:
    """Traits + calendar + ad plan, and the hazard function that ties them together."""

    def __init__(self, cfg: Config, rng: np.random.Generator):
        self.start, self.end = _day(cfg.start), _day(cfg.end)
        self.n_run = self.end - self.start + 1
        self.n_cal = self.n_run + TRUTH_HORIZON + 1
        self.c = W.draw_customers(rng, cfg.customers, self.start, self.end, cfg.archetype_share)
        self.cat = W.draw_catalogue(rng)
        self.ads = W.draw_ad_plan(rng, cfg.customers, self.n_cal, self.n_run)
        self.season, self.promo = W.draw_calendar(rng, self.start, self.n_cal)
        steps = rng.normal(0, 0.004, (self.n_cal, 2)).cumsum(axis=0)
        self.fx = np.column_stack([np.ones(self.n_cal), 0.92 * np.exp(steps[:, 0]), 1.17 * np.exp(steps[:, 1])])
        c = self.c
        self.resist_start = self.end - CREATIVE_RESISTANT_WINDOW + 1
        self.promo_gain = 1 + W.PROMO_HAZARD_GAIN * c.discount
        self.static = c.base * (1 - 0.35 * c.trust)
        # planted activation effect: hazard x act_mult on days act_from < day <= act_until
        self.act_from = np.full(c.n, -1, np.int64)
        self.act_until = np.full(c.n, -1, np.int64)
        self.act_mult = np.ones(c.n)
        self.any_activation = False

    def cycle_mult(self, t: np.ndarray, sel=slice(None)) -> np.ndarray:
        c = self.c
        t = t.astype(np.float64)
        cyc = c.cycle_days[sel]
        rep = 0.15 + 1.6 * np.exp(-0.5 * ((t - cyc) / (0.25 * cyc)) ** 2) + 0.5 * (t > cyc)
        occ = 1 - 0.85 * np.exp(-t / 14.0)
        mode = c.mode[sel]
        return np.where(mode == 0, rep, np.where(mode == 1, occ, 1.0))

    def hazard(self, day: int, last: np.ndarray, boost: np.ndarray, idx: np.ndarray | None = None,
               effects: bool = True) -> np.ndarray:
        """Daily purchase hazard on ``day`` given last purchase and click lift, of every customer
        or of the customers ``idx`` (``last`` and ``boost`` then hold those customers only).
        ``effects=False`` leaves out the planted activation effect (the counterfactual)."""
        c, k = self.c, day - self.start
        sel = slice(None) if idx is None else idx
        h = self.static[sel] * self.cycle_mult(day - last, sel) * self.season[k]
        if self.promo[k]:
            h = h * self.promo_gain[sel]
        ms = c.media_share[sel]
        h = h * (1 - ms + ms * self.ads.paid_pull[k]) * (1 + boost)
        if effects and self.any_activation:
            on = (day > self.act_from[sel]) & (day <= self.act_until[sel])
            h = h * np.where(on, self.act_mult[sel], 1.0)
        off = c.created_day[sel] > day
        if day >= self.resist_start:
            off = off | c.creative_resistant[sel]
        return np.where(off, 0.0, h)


@dataclass
class AliveEvidence:
    """What a perfect observer knows of each customer's hidden "alive" flag: the planted
    traits and every purchase and browse visit, but not the dropout draws.

    Bayes' rule on the log-odds of alive: the prior at the anchor (the last purchase: alive
    with 1 - dropout; before any purchase in the run: the share alive at the start for the
    customer's buying mode, or 1 for a customer created in the run), minus the hazard
    summed over the days since without a purchase (an alive customer does not buy on a day
    with probability exp(-h); a dropped-out one never buys), plus the visit evidence since
    (an alive customer browses on a day with probability vr, a dropped-out one with
    DEAD_VISIT_SHARE x vr). Reads no random numbers, so the data do not change with it."""

    prior_logit: np.ndarray
    hazard_since: np.ndarray
    visit_llr: np.ndarray

    @classmethod
    def at_start(cls, c: W.Customers, start: int) -> AliveEvidence:
        pre = c.created_day < start
        p = np.where(pre, 1 - W.start_dropout_share(c.mode), 1.0)
        p = np.where(c.organic_inevitable | c.margin_destroyer | c.creative_resistant, 1.0, p)
        return cls(_logit(p), np.zeros(c.n), np.zeros(c.n))

    def no_purchase(self, h: np.ndarray, buyers: np.ndarray) -> None:
        add = h.copy()
        add[buyers] = 0.0
        self.hazard_since += add

    def purchased(self, buyers: np.ndarray, dropout: np.ndarray) -> None:
        self.prior_logit[buyers] = _logit(1 - dropout)
        self.hazard_since[buyers] = 0.0
        self.visit_llr[buyers] = 0.0

    def visits(self, vr_alive: np.ndarray, active: np.ndarray, visitors: np.ndarray) -> None:
        vr = np.minimum(vr_alive, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            quiet = np.log1p(-vr) - np.log1p(-DEAD_VISIT_SHARE * vr)
        self.visit_llr += np.where(active & (vr < 1.0), quiet, 0.0)
        seen = visitors[vr[visitors] > 0]
        self.visit_llr[seen] += np.log(1 / DEAD_VISIT_SHARE) - quiet[seen]

    def p_alive(self) -> np.ndarray:
        z = self.prior_logit - self.hazard_since + self.visit_llr
        with np.errstate(over="ignore"):
            return np.where(np.isposinf(z), 1.0, 1 / (1 + np.exp(-z)))


def _logit(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


@dataclass
class Counters:
    order: int = 0
    ret: int = 0
    ticket: int = 0
    session: int = 0
    event: int = 0
    orphan: int = 0
    seq: dict = field(default_factory=dict)


class Generator:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        ss = np.random.SeedSequence(cfg.seed)
        world_ss, sim_ss, mess_ss = ss.spawn(3)
        self.rng = np.random.Generator(np.random.PCG64(sim_ss))
        self.w = World(cfg, np.random.Generator(np.random.PCG64(world_ss)))
        self.log = DefectLog(path=cfg.truth / "defects.parquet")
        self.mess = Messiness(cfg.messiness, np.random.Generator(np.random.PCG64(mess_ss)), self.w.end, self.log)
        self.pending: dict[str, dict[int, list[dict]]] = {t.raw_name: {} for t in TABLES}
        self.counts = {t.raw_name: 0 for t in TABLES}
        self.files = {t.raw_name: 0 for t in TABLES}
        self.k = Counters()
        self.drop = None
        if cfg.missing_column:
            tname, _, col = cfg.missing_column.partition(":")
            self.drop = (tname, col)
        n = cfg.customers
        r = self.rng
        self.m_anon = round(cfg.anonymous_visitors * n)
        self.anon_perm = r.permutation(3 * n + self.m_anon) + 1
        self.anon_device = r.choice(3, 3 * n + self.m_anon, p=[0.42, 0.48, 0.10])
        # identity details, drawn once as small integers
        self.first = r.integers(0, len(W.FIRST_NAMES), n)
        self.last_name = r.integers(0, len(W.LAST_NAMES), n)
        self.domain = r.integers(0, len(W.EMAIL_DOMAINS), n)
        self.phone = r.integers(10**8, 10**10, n)
        self.phone_e164 = r.random(n) < 0.7
        self.zip = r.integers(1000, 99999, n)
        # activation waves draw no random numbers: segments follow a rule, holdouts a hash
        n_seg = len(W.ACTIVATION_SEGMENTS)
        self.last_act = np.full(n, -(10**6), np.int64)
        # first activation per (segment, customer) with a complete window: n_t, n_h and the sums
        # of p_treated and p_control over the treated and over the holdout members
        self.act_stats = np.zeros((n_seg, 6))
        self.act_seen = np.zeros((n_seg, n), bool)
        self.act_counts = np.zeros((n_seg, 2), np.int64)  # all activations: treated, holdout
        self.holdout = None
        if cfg.activation:
            self.holdout = np.stack([holdout_assignment(self.w.c.ids, seg, cfg.activation_holdout)
                                     for seg in W.ACTIVATION_SEGMENTS])

    # ----------------------------------------------------------------- plumbing
    def seq(self, table: str, n: int) -> np.ndarray:
        s = self.k.seq.get(table, 0)
        self.k.seq[table] = s + n
        return np.arange(s, s + n, dtype=np.int64)

    def landing(self, eday: np.ndarray) -> np.ndarray:
        n = len(eday)
        late = self.rng.random(n) < self.cfg.late_share
        return eday + np.where(late, self.rng.integers(1, 6, n), 0)

    def push(self, table: str, chunk: dict, land: np.ndarray) -> None:
        n = len(land)
        if n == 0 or not self.cfg.enabled(table):
            return
        chunk["_seq"] = self.seq(table, n)
        keep = land <= self.w.end  # rows landing after `end` have not arrived yet
        if not keep.all():
            chunk = {k: v[keep] for k, v in chunk.items()}
            land = land[keep]
        if len(land) == 0:
            return
        lo, hi = land.min(), land.max()
        if lo == hi:
            self.pending[table].setdefault(int(lo), []).append(chunk)
            return
        order = np.argsort(land, kind="stable")
        chunk = {k: v[order] for k, v in chunk.items()}
        land = land[order]
        cuts = np.flatnonzero(np.diff(land)) + 1
        bounds = np.concatenate([[0], cuts, [len(land)]])
        for a, z in itertools.pairwise(bounds):
            self.pending[table].setdefault(int(land[a]), []).append({k: v[a:z] for k, v in chunk.items()})

    # ----------------------------------------------------------------- rows
    def customer_rows(self, idx: np.ndarray, updated: np.ndarray, consent: np.ndarray) -> dict:
        c = self.w.c
        first = W.FIRST_NAMES[self.first[idx]].astype(S)
        last = W.LAST_NAMES[self.last_name[idx]].astype(S)
        email = np.strings.lower(np.strings.add(np.strings.add(np.strings.add(first, "."), last),
                                                np.strings.add(idx.astype(S), "@")))
        email = np.strings.add(email, W.EMAIL_DOMAINS[self.domain[idx]].astype(S))
        country = c.country[idx]
        national = self.phone[idx].astype(S)
        phone = np.where(self.phone_e164[idx],
                         np.strings.add(np.strings.add("+", W.COUNTRY_DIAL[country].astype(S)), national),
                         np.strings.add("0", national))
        z = self.zip[idx]
        zip_ = np.where(np.isin(country, [2, 5, 6]), (z % 9000 + 1000).astype(S), np.strings.zfill(z.astype(S), 5))
        gb = country == 8
        zip_ = np.where(gb, np.strings.add(np.strings.add("SW", (z % 20 + 1).astype(S)), " 1AA"), zip_)
        cons = np.where(consent, "true", np.where(self.rng.random(len(idx)) < 0.1, "", "false")).astype(S)
        return {"customer_id": c.ids[idx], "email": email, "phone": phone, "first_name": first,
                "last_name": last, "country": W.COUNTRIES[country].astype(S), "zip": zip_,
                "created_at": c.created_sec[idx], "updated_at": updated, "marketing_consent": cons}

    def make_orphans(self, k: int, land_day: int):
        r = self.mess.rng
        order_no = 900_000_000 + self.k.orphan + np.arange(k)
        self.k.orphan += k
        oid = ids("O", order_no, 9)
        ts = land_day * SECONDS_PER_DAY + r.integers(8 * 3600, 22 * 3600, k)
        sku = r.integers(0, len(self.w.cat.sku), k)
        price = self.w.cat.price[sku]
        orders = {
            "order_id": oid, "customer_id": ids("C", 90_000_000 + order_no % 1_000_000, 8),
            "ordered_at": ts, "currency": np.full(k, "EUR", dtype=S), "gross_amount": price,
            "discount_amount": np.zeros(k), "coupon_code": np.full(k, "", dtype=S),
            "shipping_fee": np.full(k, 4.95), "shipping_cost": np.full(k, 5.2),
            "sales_channel": np.full(k, "web", dtype=S), "utm_medium": np.full(k, "direct", dtype=S),
            "_eday": np.full(k, land_day, np.int64), "_orphan": np.ones(k, np.int8),
            "_seq": self.seq("crm__orders", k),
        }
        lines = {
            "order_id": oid, "line_number": np.ones(k, np.int64), "sku": self.w.cat.sku[sku],
            "category": np.array(W.CATEGORIES, dtype=S)[self.w.cat.category[sku]],
            "quantity": np.ones(k, np.int64), "unit_price": price, "unit_cost": self.w.cat.cost[sku],
            "_eday": np.full(k, land_day, np.int64), "_orphan": np.ones(k, np.int8),
            "_seq": self.seq("crm__order_lines", k),
        }
        return orders, lines

    # ----------------------------------------------------------------- the run
    def run(self) -> dict:
        cfg, w, c, r = self.cfg, self.w, self.w.c, self.rng
        n = c.n
        alive = c.alive0.copy()
        last = c.last0.copy()
        evidence = AliveEvidence.at_start(c, w.start)
        boost = np.zeros(n)
        last_click = np.full(n, -1, np.int8)
        withdrawn = np.zeros(n, bool)
        self.withdrawn_day = np.full(n, -1, np.int64)
        cutoffs = {w.end - 7 * i for i in range(cfg.truth_weeks) if w.end - 7 * i >= w.start}
        truth_writer = None
        theme_driver = w.ads.creative_theme
        ch_creatives = [np.flatnonzero(w.ads.creative_channel == ch) for ch in range(len(W.CHANNELS))]

        for day in range(w.start, w.end + 1):
            k = day - w.start
            d0 = day * SECONDS_PER_DAY
            active = c.created_day <= day

            # customers: initial export, sign-ups, consent withdrawals
            if day == w.start:
                idx = np.flatnonzero(c.created_day < w.start)
                ch = self.customer_rows(idx, c.created_sec[idx], c.consent[idx])
                ch["_eday"] = np.full(len(idx), day, np.int64)
                self.push("crm__customers", ch, np.full(len(idx), day, np.int64))
            idx = np.flatnonzero(c.created_day == day)
            if len(idx):
                ch = self.customer_rows(idx, c.created_sec[idx], c.consent[idx])
                ch["_eday"] = np.full(len(idx), day, np.int64)
                self.push("crm__customers", ch, self.landing(ch["_eday"]))
            wd = np.flatnonzero(active & c.consent & ~withdrawn & (c.created_day < day)
                                & (r.random(n) < 0.08 / 365))
            if len(wd):
                withdrawn[wd] = True
                self.withdrawn_day[wd] = day
                upd = d0 + r.integers(0, SECONDS_PER_DAY, len(wd))
                ch = self.customer_rows(wd, upd, np.zeros(len(wd), bool))
                ch["_eday"] = np.full(len(wd), day, np.int64)
                self.push("crm__customers", ch, self.landing(ch["_eday"]))

            # ad exposures: reach per channel follows the Hill curve of the day's spend
            reach = w.ads.reach[k][None, :] * c.targeting[:, None]
            in_window = day >= w.resist_start
            if in_window:
                cr = c.creative_resistant | c.retarget
                reach[cr] = 0.55 * reach[cr] / np.maximum(reach[cr].sum(axis=1, keepdims=True), 1e-12)
            cum = np.cumsum(reach, axis=1)
            u = r.random(n)
            exposed = active & (u < cum[:, -1])
            e_idx = np.flatnonzero(exposed)
            e_ch = (u[e_idx, None] >= cum[e_idx]).sum(axis=1)
            e_cr = np.empty(len(e_idx), np.int64)
            for ch in range(len(W.CHANNELS)):
                sel = e_ch == ch
                wts = w.ads.creative_weight[k, ch_creatives[ch]]
                e_cr[sel] = r.choice(ch_creatives[ch], sel.sum(), p=wts / wts.sum())
            heavy = (c.creative_resistant[e_idx] | c.retarget[e_idx]) & in_window
            impressions = np.where(heavy, 3 + r.poisson(7, len(e_idx)), 1 + r.poisson(1.5, len(e_idx)))
            ctr = 0.03 * (0.1 + 2 * c.ad_resp[e_idx]) * np.where(theme_driver[e_cr] == c.driver[e_idx], 2.5, 1.0)
            ctr = np.where(c.creative_resistant[e_idx], 0.0, np.minimum(ctr, 0.6))
            clicks = r.binomial(impressions, ctr)
            boost *= CLICK_DECAY
            clicked = e_idx[clicks > 0]
            boost[clicked] += CLICK_GAIN * c.ad_resp[clicked]
            last_click[clicked] = e_ch[clicks > 0]
            self.push("ads__exposures", {
                "exposure_date": np.full(len(e_idx), day, np.int64), "customer_id": c.ids[e_idx],
                "channel": np.array(W.CHANNELS, dtype=S)[e_ch], "creative_id": w.ads.creative_ids[e_cr],
                "impressions": impressions, "clicks": clicks, "_eday": np.full(len(e_idx), day, np.int64),
            }, self.landing(np.full(len(e_idx), day, np.int64)))

            # purchases
            h = w.hazard(day, last, boost)
            new = c.created_day == day
            p = np.where(new, 0.5, 1 - np.exp(-h))
            buy = (alive | new) & (r.random(n) < p)
            b = np.flatnonzero(buy)
            self.orders(day, b, boost, last_click)
            last[b] = day
            alive[b] &= r.random(len(b)) >= c.dropout[b]
            evidence.no_purchase(h, b)
            evidence.purchased(b, c.dropout[b])

            # sessions: browsing (abandoned carts), ad clicks, pure-anonymous visitors
            vr_alive = c.visit_rate if not in_window else np.where(c.creative_resistant, 0.0, c.visit_rate)
            vr = vr_alive * np.where(alive, 1.0, DEAD_VISIT_SHARE)
            br = np.flatnonzero(active & (r.random(n) < vr))
            evidence.visits(vr_alive, active, br)
            nb = len(br)
            cart = r.random(nb) < 0.12 + 0.45 * c.trust[br]
            chk = cart & (r.random(nb) < 0.3 + 0.3 * c.trust[br])
            med = self.organic_medium(br)
            self.sessions(day, br, d0 + r.choice(24, nb, p=HOUR_P) * 3600, 1 + r.poisson(2.5, nb), cart, chk,
                          np.zeros(nb, bool), med, np.full(nb, -1), None)
            ck = clicked[~(c.creative_resistant[clicked])]
            cc = last_click[ck].astype(np.int64)
            nk = len(ck)
            camp = w.ads.creative_campaign[e_cr[clicks > 0]][~c.creative_resistant[clicked]]
            self.sessions(day, ck, d0 + r.choice(24, nk, p=HOUR_P) * 3600, 1 + r.poisson(2, nk),
                          r.random(nk) < 0.2 + 0.3 * c.trust[ck], np.zeros(nk, bool), np.zeros(nk, bool),
                          CHANNEL_MEDIUM_CODE[cc], cc, camp)
            na = r.binomial(self.m_anon, 2.5 / 365) if self.m_anon else 0
            av = r.integers(0, self.m_anon, na) if na else np.zeros(0, np.int64)
            self.sessions(day, -1 - av, d0 + r.choice(24, na, p=HOUR_P) * 3600, 1 + r.poisson(1.5, na),
                          r.random(na) < 0.08, np.zeros(na, bool), np.zeros(na, bool),
                          r.choice([M_ORGANIC, M_DIRECT, M_REFERRAL, 5, 6], na, p=[0.45, 0.3, 0.1, 0.1, 0.05]),
                          np.full(na, -1), None)

            # support tickets not tied to an order
            tk = np.flatnonzero(active & (r.random(n) < np.where(c.margin_destroyer, 1.5, 0.25) / 365))
            self.tickets(tk, day + np.zeros(len(tk), np.int64), r.choice([1, 3, 4], len(tk), p=[0.3, 0.3, 0.4]))

            # spend and fx
            self.spend_rows(day, k)
            if day == w.start:
                nc = len(w.ads.creative_ids)
                self.push("ads__creatives", {
                    "creative_id": w.ads.creative_ids, "channel": np.array(W.CHANNELS, dtype=S)[w.ads.creative_channel],
                    "format": w.ads.creative_format.astype(S),
                    "persuasion_theme": np.array(PERSUASION_THEMES, dtype=S)[w.ads.creative_theme],
                    "_eday": np.full(nc, day, np.int64)}, np.full(nc, day, np.int64))
            if cfg.fx:
                self.push("fx__rates", {"rate_date": np.full(2, day, np.int64), "currency": np.array(["USD", "GBP"], dtype=S),
                                        "rate_to_reporting": np.round(w.fx[k, 1:], 6), "_eday": np.full(2, day, np.int64)},
                          self.landing(np.full(2, day, np.int64)))

            if cfg.activation and (k - W.ACTIVATION_FIRST_OFFSET) >= 0 \
                    and (k - W.ACTIVATION_FIRST_OFFSET) % W.ACTIVATION_EVERY == 0:
                self.activation_wave(day, alive, last, boost, withdrawn)
            if day in cutoffs:
                part = self.truth_at(day, alive, last, boost, evidence.p_alive())
                if truth_writer is None:
                    truth_writer = pq.ParquetWriter(cfg.truth / "purchase_probability.parquet", part.schema)
                truth_writer.write_table(part)
            self.flush(day)
            self.log.flush()

        if truth_writer is None:
            pq.write_table(TRUTH_PP_SCHEMA.empty_table(), cfg.truth / "purchase_probability.parquet")
        else:
            truth_writer.close()
        self.log.flush(final=True)
        return self.finish()

    def organic_medium(self, idx: np.ndarray) -> np.ndarray:
        c, r = self.w.c, self.rng
        u = r.random(len(idx))
        email_ok = c.consent[idx]
        med = np.where(u < 0.45, M_ORGANIC, np.where(u < 0.8, M_DIRECT, np.where(u < 0.9, M_REFERRAL, M_EMAIL)))
        return np.where((med == M_EMAIL) & ~email_ok, M_DIRECT, med)

    def orders(self, day: int, b: np.ndarray, boost: np.ndarray, last_click: np.ndarray) -> None:
        cfg, w, c, r = self.cfg, self.w, self.w.c, self.rng
        k = day - w.start
        nb = len(b)
        if nb == 0:
            return
        order_no = self.k.order + 1 + np.arange(nb)
        self.k.order += nb
        oid = ids("O", order_no, 9)
        ts = day * SECONDS_PER_DAY + r.choice(24, nb, p=HOUR_P) * 3600 + r.integers(0, 3600, nb)
        cur = c.currency[b] if cfg.fx else np.zeros(nb, np.int64)
        rate = w.fx[k, cur]
        sc = r.choice(4, nb, p=[0.68, 0.2, 0.07, 0.05])

        # attribution: recent click > ad pressure > organic mix
        pc = boost[b] / (1 + boost[b])
        ms = c.media_share[b] * w.ads.paid_pull[k]
        pm = ms / (1 - c.media_share[b] + ms)
        u = r.random(nb)
        reach_w = w.ads.reach[k] * W.CURVE_PAID_WEIGHT
        paid_ch = r.choice(len(W.CHANNELS), nb, p=reach_w / reach_w.sum())
        med = self.organic_medium(b)
        med = np.where(u < pc + (1 - pc) * pm, CHANNEL_MEDIUM_CODE[paid_ch], med)
        has_click = (u < pc) & (last_click[b] >= 0)
        med = np.where(has_click, CHANNEL_MEDIUM_CODE[np.maximum(last_click[b], 0)], med)
        med = np.where(r.random(nb) < 0.03, M_EMPTY, med)
        med = np.where(c.organic_inevitable[b] & (med >= 5), M_DIRECT, med)
        order_ch = np.where(has_click, last_click[b], paid_ch)

        # lines
        md = c.margin_destroyer[b]
        nl = 1 + r.poisson(np.where(md, 1.2, 0.6))
        li = np.repeat(np.arange(nb), nl)
        line_no = np.arange(len(li)) - np.repeat(np.cumsum(nl) - nl, nl) + 1
        fav = c.fav_category[b][li]
        cat = np.where(r.random(len(li)) < 0.5, fav, r.integers(0, len(W.CATEGORIES), len(li)))
        sku = cat * W.SKUS_PER_CATEGORY + r.integers(0, W.SKUS_PER_CATEGORY, len(li))
        qty = 1 + (r.random(len(li)) < 0.15) * (1 + r.poisson(0.3, len(li)))
        price = np.round(w.cat.price[sku] / rate[li], 2)
        cost = np.round(w.cat.cost[sku] / rate[li], 2)
        gross = np.round(np.bincount(li, qty * price, nb), 2)

        ds = c.discount[b]
        promo = w.promo[k]
        p_disc = np.where(md, W.MARGIN_DESTROYER_DISCOUNT, W.discount_probability(ds, promo))
        disc = r.random(nb) < p_disc
        depth = np.where(md, r.uniform(0.35, 0.5, nb),
                         (r.choice([0.1, 0.15, 0.2, 0.25, 0.3], nb) + (0.05 if promo else 0.0)))
        depth = np.where(disc, depth, 0.0)
        disc_amt = np.round(gross * depth, 2)
        pct = np.round(depth * 100).astype(np.int64)
        code = np.where(md, np.strings.add("VIP", pct.astype(S)),
                        np.strings.add("FLASH" if promo else "SAVE", pct.astype(S)))
        code = np.where(disc & (r.random(nb) < 0.85), code, "").astype(S)
        net_eur = (gross - disc_amt) * rate
        fee = np.where((net_eur >= 49) | md, 0.0, np.round(4.95 / rate, 2))
        ship_cost = np.round((r.uniform(3.5, 7.5, nb) + 0.02 * net_eur) / rate, 2)
        ship_cost = np.where(sc == 3, 0.0, ship_cost)

        land = self.landing(np.full(nb, day, np.int64))
        self.push("crm__orders", {
            "order_id": oid, "customer_id": c.ids[b], "ordered_at": ts, "currency": W.CURRENCIES[cur].astype(S),
            "gross_amount": gross, "discount_amount": np.where(disc, disc_amt, np.where(r.random(nb) < 0.5, 0.0, np.nan)),
            "coupon_code": code, "shipping_fee": fee, "shipping_cost": ship_cost,
            "sales_channel": SALES_CHANNELS[sc], "utm_medium": MEDIA[med], "_eday": np.full(nb, day, np.int64),
        }, land)
        self.push("crm__order_lines", {
            "order_id": oid[li], "line_number": line_no, "sku": w.cat.sku[sku],
            "category": np.array(W.CATEGORIES, dtype=S)[cat], "quantity": qty, "unit_price": price,
            "unit_cost": cost, "_eday": np.full(len(li), day, np.int64),
        }, land[li])

        # web purchase sessions for web/app orders
        online = np.flatnonzero(sc <= 1)
        camp_no = order_ch[online] * W.CAMPAIGNS_PER_CHANNEL + r.integers(0, W.CAMPAIGNS_PER_CHANNEL, len(online))
        self.sessions(day, b[online], np.maximum(ts[online] - 900, day * SECONDS_PER_DAY),
                      1 + r.poisson(2.0 + 4 * c.trust[b[online]]), np.ones(len(online), bool),
                      np.ones(len(online), bool), np.ones(len(online), bool), med[online],
                      np.where(med[online] >= 5, order_ch[online], -1), ids("CMP-", camp_no + 1, 3))

        # returns: each line returned with the customer's propensity x the category's
        p_ret = np.clip(c.returns[b][li] * W.CATEGORY_RETURN[cat], 0, 0.95)
        p_ret = np.where(md[li], c.returns[b][li], p_ret)
        rl = np.flatnonzero(r.random(len(li)) < p_ret)
        if len(rl):
            nr = len(rl)
            rday = day + 3 + r.poisson(9, nr)
            rno = self.k.ret + 1 + np.arange(nr)
            self.k.ret += nr
            rq = np.minimum(qty[rl], 1 + r.poisson(0.2, nr))
            refund = np.round(price[rl] * rq * (1 - depth[li[rl]]), 2)
            reason = np.where(np.isin(cat[rl], [3, 4]) & (r.random(nr) < 0.6), 0, r.choice(5, nr, p=[0.05, 0.15, 0.3, 0.4, 0.1]))
            self.push("returns__returns", {
                "return_id": ids("R", rno, 9), "order_id": oid[li[rl]], "sku": w.cat.sku[sku[rl]],
                "returned_at": rday * SECONDS_PER_DAY + r.integers(8 * 3600, 20 * 3600, nr), "quantity": rq,
                "refund_amount": refund, "reason": REASONS[reason],
                "return_shipping_cost": np.round(r.uniform(4.0, 9.0, nr) / rate[li[rl]], 2),
                "_line_value": price[rl] * qty[rl], "_eday": rday,
            }, self.landing(rday))

        # support tickets following an order
        p_t = np.where(md, 0.8, 0.05 + 0.25 * c.returns[b])
        to = np.flatnonzero(r.random(nb) < p_t)
        self.tickets(b[to], day + 1 + r.poisson(4, len(to)), r.choice(4, len(to), p=[0.35, 0.25, 0.3, 0.1]))

    def tickets(self, cust: np.ndarray, tday: np.ndarray, topic: np.ndarray) -> None:
        c, r = self.w.c, self.rng
        nt = len(cust)
        if nt == 0:
            return
        tno = self.k.ticket + 1 + np.arange(nt)
        self.k.ticket += nt
        md = c.margin_destroyer[cust]
        minutes = np.where(md, r.lognormal(np.log(38), 0.35, nt), r.lognormal(np.log(9), 0.6, nt))
        self.push("crm__support_tickets", {
            "ticket_id": ids("T", tno, 9), "customer_id": c.ids[cust],
            "created_at": tday * SECONDS_PER_DAY + r.integers(7 * 3600, 21 * 3600, nt),
            "topic": TOPICS[topic], "handle_minutes": np.round(minutes, 1), "_eday": tday,
        }, self.landing(tday))

    def sessions(self, day, owner, start_sec, n_browse, cart, checkout, purchase, medium, channel, campaign) -> None:
        """Expand sessions into events. owner >= 0: customer index; owner < 0: anonymous visitor -1-owner."""
        c, r = self.w.c, self.rng
        ns = len(owner)
        if ns == 0 or not self.cfg.web:
            return
        known = owner >= 0
        own = np.where(known, owner, 0)
        slot = r.integers(0, 3, ns) % np.where(known, c.n_devices[own], 1)
        anon_ix = np.where(known, 3 * own + slot, 3 * c.n + (-1 - owner))
        anon = ids("A", self.anon_perm[anon_ix], 10)
        login_p = np.where(purchase, np.maximum(c.login_rate[own], 0.85), c.login_rate[own])
        logged = known & (r.random(ns) < login_p)
        sid = ids("S", self.k.session + 1 + np.arange(ns), 10)
        self.k.session += ns

        n_ev = n_browse + cart + checkout + purchase
        si = np.repeat(np.arange(ns), n_ev)
        ne = len(si)
        pos = np.arange(ne) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev)
        stage = pos - n_browse[si]  # < 0 browse; 0 cart; 1 checkout; 2 purchase
        # page choice: base mix, driver's page x3, trust pages grow with trust friction
        wts = np.broadcast_to(W.BROWSE_PAGE_WEIGHTS, (ne, len(W.BROWSE_PAGE_WEIGHTS))).copy()
        ek = known[si]
        eo = own[si]
        rows = np.flatnonzero(ek)
        wts[rows, W.DRIVER_PAGE[c.driver[eo[rows]]]] += 0.25
        wts[np.ix_(rows, W.TRUST_PAGES)] += (0.12 * c.trust[eo[rows]])[:, None] * 3
        cum = np.cumsum(wts, axis=1)
        page = (r.random(ne)[:, None] * cum[:, -1:] >= cum).sum(axis=1)
        page = np.where(stage == 0, 2, np.where(stage > 0, 10, page))
        etype = np.where(stage < 0, 0, stage + 1)
        gaps = 5 + r.exponential(45, ne).astype(np.int64)
        cs = np.cumsum(gaps)
        offs = cs - np.repeat(cs[np.cumsum(n_ev) - n_ev], n_ev)
        ts = np.minimum(start_sec[si] + offs, (day + 1) * SECONDS_PER_DAY - 1)

        medium = np.asarray(medium)
        src = np.select([medium == M_ORGANIC, medium == M_EMAIL, medium == M_REFERRAL],
                        ["google", "newsletter", "blog.example.com"], "").astype(S)
        paid = medium >= 5
        src = np.where(paid, W.CHANNEL_SOURCE[np.maximum(channel, 0)].astype(S), src)
        month = np.datetime_as_string(np.array([day], dtype="datetime64[D]"), unit="M")[0].replace("-", "")
        camp = np.where(medium == M_EMAIL, f"nl-{month}", "").astype(S)
        if campaign is not None:
            camp = np.where(paid, campaign, camp)
        event_types = np.array(["page_view", "add_to_cart", "checkout_start", "purchase"], dtype=S)
        eid = ids("E", self.k.event + 1 + np.arange(ne), 11)
        self.k.event += ne
        self.push("web__events", {
            "event_id": eid, "anonymous_id": anon[si],
            "customer_id": np.where(logged[si], c.ids[own[si]], ""),
            "session_id": sid[si], "event_at": ts, "event_type": event_types[etype],
            "page_type": W.PAGE_TYPES[page].astype(S), "utm_source": src[si],
            "utm_medium": np.where(medium == M_DIRECT, "", MEDIA[medium])[si],
            "utm_campaign": camp[si], "device": DEVICES[self.anon_device[anon_ix]][si],
            "_eday": np.full(ne, day, np.int64),
        }, self.landing(np.full(ne, day, np.int64)))

    def spend_rows(self, day: int, k: int) -> None:
        w, r = self.w, self.rng
        if not self.cfg.ads:
            return
        ch = w.ads.creative_channel
        sp = np.round(w.ads.spend[k, ch] * w.ads.creative_weight[k], 2)
        keep = np.flatnonzero(sp >= 0.01)
        cpm = np.array([7.0, 12.0, 5.0, 3.0])[ch[keep]]
        imp = np.round(sp[keep] / cpm * 1000).astype(np.int64)
        clk = r.binomial(imp, np.array([0.012, 0.04, 0.008, 0.002])[ch[keep]])
        nk = len(keep)
        self.push("ads__spend", {
            "spend_date": np.full(nk, day, np.int64), "channel": np.array(W.CHANNELS, dtype=S)[ch[keep]],
            "campaign_id": w.ads.creative_campaign[keep], "creative_id": w.ads.creative_ids[keep],
            "spend": sp[keep], "impressions": imp, "clicks": clk, "_eday": np.full(nk, day, np.int64),
        }, self.landing(np.full(nk, day, np.int64)))

    def activation_wave(self, day: int, alive: np.ndarray, last: np.ndarray, boost: np.ndarray,
                        withdrawn: np.ndarray) -> None:
        """Activate the segment audiences at the end of ``day``: log treated and holdout
        members, switch the planted effect on for the treated, and record the truth: each
        member's probability to buy in the window with and without the effect."""
        w, c = self.w, self.w.c
        eligible = ((c.created_day < day) & c.consent & ~withdrawn
                    & (day - self.last_act >= W.ACTIVATION_COOLDOWN_DAYS))
        seg = W.activation_segment(c, day, last, eligible)
        idx = np.flatnonzero(seg >= 0)
        if len(idx) == 0:
            return
        s = seg[idx]
        hold = self.holdout[s, idx]
        self.last_act[idx] = day
        # organic inevitables buy anyway: activating them plants no effect (world.py)
        eff = np.where(c.organic_inevitable[idx], 0.0, W.SEGMENT_EFFECTS[s])

        # truth: cumulative hazard over the window without / with the effect (clicks decay as
        # in truth_at); a member converts with probability alive * (1 - exp(-H))
        h_ctl = np.zeros(len(idx))
        h_trt = np.zeros(len(idx))
        b = boost[idx].copy()
        for j in range(1, W.ACTIVATION_EFFECT_DAYS + 1):
            b *= CLICK_DECAY
            hj = w.hazard(day + j, last[idx], b, idx, effects=False)
            h_ctl += hj
            h_trt += hj * (1 + eff)
        a = alive[idx].astype(np.float64)
        p_ctl, p_trt = a * -np.expm1(-h_ctl), a * -np.expm1(-h_trt)
        n_seg = len(W.ACTIVATION_SEGMENTS)
        self.act_counts[:, 0] += np.bincount(s[~hold], minlength=n_seg)
        self.act_counts[:, 1] += np.bincount(s[hold], minlength=n_seg)
        # the estimand is measured on first activations only (later ones are selected by the
        # earlier treatment; see measurement.incrementality)
        first = ~self.act_seen[s, idx]
        self.act_seen[s, idx] = True
        if day + W.ACTIVATION_EFFECT_DAYS <= w.end:
            ft, fh = first & ~hold, first & hold
            self.act_stats[:, 0] += np.bincount(s[ft], minlength=n_seg)
            self.act_stats[:, 1] += np.bincount(s[fh], minlength=n_seg)
            self.act_stats[:, 2] += np.bincount(s[ft], p_trt[ft], n_seg)
            self.act_stats[:, 3] += np.bincount(s[ft], p_ctl[ft], n_seg)
            self.act_stats[:, 4] += np.bincount(s[fh], p_trt[fh], n_seg)
            self.act_stats[:, 5] += np.bincount(s[fh], p_ctl[fh], n_seg)

        treated = idx[~hold]
        w.act_from[treated] = day
        w.act_until[treated] = day + W.ACTIVATION_EFFECT_DAYS
        w.act_mult[treated] = 1 + eff[~hold]
        w.any_activation = True

        # log rows: one per member and channel of the segment's audience
        n_ch = np.array([len(ch) for ch in W.SEGMENT_CHANNELS])[s]
        ri = np.repeat(np.arange(len(idx)), n_ch)
        pos = np.arange(len(ri)) - np.repeat(np.cumsum(n_ch) - n_ch, n_ch)
        width = max(len(ch) for ch in W.SEGMENT_CHANNELS)
        table = np.array([list(ch) + [""] * (width - len(ch)) for ch in W.SEGMENT_CHANNELS], dtype=S)
        channel = table[s[ri], pos]
        segment = np.array(W.ACTIVATION_SEGMENTS, dtype=S)[s[ri]]
        nr = len(ri)
        self.push("marketing__activation_log", {
            "activation_date": np.full(nr, day, np.int64), "customer_id": c.ids[idx[ri]],
            "segment": segment, "audience": np.strings.add(np.strings.add(segment, "_"), channel),
            "channel": channel, "test_group": np.where(hold[ri], "holdout", "treated").astype(S),
            "_eday": np.full(nr, day, np.int64),
        }, np.full(nr, day, np.int64))

    # ----------------------------------------------------------------- truth
    def truth_at(self, day: int, alive: np.ndarray, last: np.ndarray, boost: np.ndarray,
                 p_alive_observed: np.ndarray) -> pa.Table:
        """P(purchase in (day, day+h]) = alive * (1 - exp(-sum of the no-purchase hazard)).

        ``p_purchase_30d_observed`` puts the observer's P(alive) (AliveEvidence) in place of
        the hidden alive flag: the best probability anyone could state who knew every trait
        and saw every purchase and visit, but not the dropout draws."""
        w, c = self.w, self.w.c
        cum = np.zeros(c.n)
        h7 = None
        b = boost.copy()
        for j in range(1, TRUTH_HORIZON + 1):
            b *= CLICK_DECAY
            cum += w.hazard(day + j, last, b)
            if j == 7:
                h7 = cum.copy()
        ok = c.created_day <= day
        a = alive[ok].astype(np.float64)
        return pa.table({
            "customer_id": pa.array(c.ids[ok].astype(object), pa.string()),
            "cutoff_date": pa.array(np.full(ok.sum(), day, np.int64).astype("datetime64[D]")),
            "p_purchase_7d": a * -np.expm1(-h7[ok]),
            "p_purchase_30d": a * -np.expm1(-cum[ok]),
            "alive": alive[ok],
            "p_alive_observed": p_alive_observed[ok],
            "p_purchase_30d_observed": p_alive_observed[ok] * -np.expm1(-cum[ok]),
        }, schema=TRUTH_PP_SCHEMA)

    # ----------------------------------------------------------------- output
    def flush(self, day: int) -> None:
        cfg = self.cfg
        last_day = day == self.w.end
        for t in TABLES:
            name = t.raw_name
            if not cfg.enabled(name):
                continue
            chunks = self.pending[name].pop(day, [])
            drop = self.drop[1] if self.drop and self.drop[0] == name and last_day else None
            carried = (name, day) in self.mess.carry
            if not chunks and not carried and drop is None:
                continue
            rel = f"{t.source}/{t.table}/{_date(day).isoformat()}.csv"
            lines, orphan_lines = render_file(
                t, chunks, day, rel, self.mess, drop,
                self.make_orphans if name == "crm__orders" else None)
            if orphan_lines is not None:
                self.pending["crm__order_lines"].setdefault(day, []).append(orphan_lines)
            if drop is not None:
                self.log.add("missing_column", t, rel, [0], drop, [""], f"column {drop} dropped from the file")
            path = self.cfg.out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines.tolist()) + "\n", encoding="utf-8")
            self.counts[name] += len(lines) - 1
            self.files[name] += 1

    def finish(self) -> dict:
        cfg, w, c = self.cfg, self.w, self.w.c
        tr = cfg.truth
        truth = pa.table({
            "customer_id": pa.array(c.ids.astype(object), pa.string()),
            "created_date": pa.array(c.created_day.astype("datetime64[D]")),
            "buying_mode": pa.array(np.array(W.BUYING_MODES, dtype=object)[c.mode], pa.string()),
            "cycle_days": np.where(c.mode == 0, c.cycle_days, np.nan),  # replenishers only
            "base_hazard": c.base, "dropout_prob": c.dropout,
            "persuasion_driver": pa.array(np.array(PERSUASION_THEMES, dtype=object)[c.driver], pa.string()),
            "discount_sensitivity": c.discount, "return_propensity": c.returns,
            "ad_responsiveness": c.ad_resp, "organic_propensity": c.organic, "trust_friction": c.trust,
            "media_share": c.media_share, "ad_targeting": c.targeting,
            "marketing_consent": c.consent,
            "consent_withdrawn_date": pa.array(self.withdrawn_day.astype("datetime64[D]"), pa.date32(),
                                               mask=self.withdrawn_day < 0),
            "in_retargeting_pool": c.retarget,
            "is_organic_inevitable": c.organic_inevitable, "is_margin_destroyer": c.margin_destroyer,
            "is_creative_resistant": c.creative_resistant,
        })
        pq.write_table(truth, tr / "customers.parquet")
        pq.write_table(pa.table({
            "date": (w.start + np.arange(w.n_run)).astype("datetime64[D]"),
            "promo": w.promo[: w.n_run], "season": w.season[: w.n_run],
        }), tr / "calendar.parquet")
        pq.write_table(pa.table({
            "channel": list(W.CHANNELS),
            "reach_max": W.CURVE_REACH_MAX, "half_saturation_spend_per_1000": W.CURVE_HALF_SAT,
            "half_saturation_spend": W.CURVE_HALF_SAT * cfg.customers / 1000.0, "hill_shape": W.CURVE_SHAPE,
            "mean_daily_spend": w.ads.spend[: w.n_run].mean(axis=0), "paid_order_weight": W.CURVE_PAID_WEIGHT,
            "medium": [str(x) for x in W.CHANNEL_MEDIUM],
        }), tr / "channel_curves.parquet")
        st, cnt = self.act_stats, self.act_counts
        with np.errstate(invalid="ignore", divide="ignore"):
            n_all = st[:, 0] + st[:, 1]
            # the estimand: average effect over the first activation of every member (treated
            # and holdout) whose window ended by `end`; the holdout is random, so both groups
            # estimate the same thing
            p_t = (st[:, 2] + st[:, 4]) / n_all
            p_c = (st[:, 3] + st[:, 5]) / n_all
        pq.write_table(pa.table({
            "segment": list(W.ACTIVATION_SEGMENTS),
            # planted: hazard x (1 + lift), for every member but the organic inevitables (0)
            "true_relative_lift": W.SEGMENT_EFFECTS,
            "effect_days": np.full(len(W.ACTIVATION_SEGMENTS), W.ACTIVATION_EFFECT_DAYS),
            "channels": [",".join(ch) for ch in W.SEGMENT_CHANNELS],
            "activations_treated": cnt[:, 0], "activations_holdout": cnt[:, 1],
            "first_complete_windows_treated": st[:, 0].astype(np.int64),
            "first_complete_windows_holdout": st[:, 1].astype(np.int64),
            "true_conversion_treated": p_t, "true_conversion_holdout": p_c,
            "true_conversion_diff": p_t - p_c, "true_conversion_lift": p_t / p_c - 1,
        }), tr / "segment_effects.parquet")
        kinds = {kd: self.log.counts.get(kd, 0) for kd in KINDS}
        summary = {
            "generator_version": GENERATOR_VERSION,
            "config": {**asdict(cfg), "start": cfg.start.isoformat(), "end": cfg.end.isoformat(),
                       "out": str(cfg.out), "truth": str(cfg.truth)},
            "rows": {k: v for k, v in self.counts.items() if cfg.enabled(k)},
            "files": {k: v for k, v in self.files.items() if cfg.enabled(k)},
            "defects": kinds,
            "archetypes": {"organic_inevitable": int(c.organic_inevitable.sum()),
                           "margin_destroyer": int(c.margin_destroyer.sum()),
                           "creative_resistant": int(c.creative_resistant.sum())},
        }
        (tr / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary


def generate(config: Config) -> dict:
    """Write the source CSVs under ``config.out`` and the planted truth under ``config.truth``."""
    cfg = config.resolved()
    if cfg.out.resolve() == cfg.truth.resolve() or cfg.truth.resolve().is_relative_to(cfg.out.resolve()):
        raise ValueError("truth must not be written inside out: the pipeline reads everything under out")
    if cfg.clean:
        # remove only what a previous run wrote: daily CSVs of contract tables, truth files
        for t in TABLES:
            for f in (cfg.out / t.source / t.table).glob("*.csv"):
                f.unlink()
        for name in TRUTH_FILES:
            (cfg.truth / name).unlink(missing_ok=True)
    cfg.out.mkdir(parents=True, exist_ok=True)
    cfg.truth.mkdir(parents=True, exist_ok=True)
    return Generator(cfg).run()


__all__ = ["GENERATOR_VERSION", "Config", "generate"]
