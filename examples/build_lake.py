"""Write the Parquet files of the example lake (``examples/lake/``).

The lake belongs to Ridgeline, a made-up outdoor-gear retailer with ten shops in Portugal,
Spain and France and a web shop. The script reads the reference data committed as CSV in the
lake (stores, products, customers, campaigns, e-mail events), simulates two weeks of trading
(2025-06-02 to 2025-06-15) with a fixed seed, and then builds every Parquet dataset layer by
layer, the way the manifests' ``depends_on`` describe it: raw -> staging -> gold -> ml.

It is deterministic (fixed seed, fixed dates, sorted output) and idempotent: a file is written
only when its bytes change, so a second run leaves every mtime alone and a recrawl of the lake
sees nothing new. Standard library and pyarrow only.

    python examples/build_lake.py            # (re)write the Parquet files
    python examples/build_lake.py --check    # exit 1 if any file is missing or out of date
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import math
import random
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger("build_lake")

SEED = 20250615
FIRST_DAY = date(2025, 6, 2)  # a Monday: the window is ISO weeks 23 and 24
DAYS = [FIRST_DAY + timedelta(days=i) for i in range(14)]
FEATURE_DATE = DAYS[-1]
CATEGORY_WEIGHT = {"Footwear": 3, "Apparel": 3, "Camping": 2, "Climbing": 1, "Accessories": 3}
MULTI_UNIT = {"Socks", "Chalk", "Cooking", "Hydration"}
PAID_CHANNEL_PLATFORM = {"search": "google_ads", "display": "google_ads", "social": "meta_ads"}
CPM_EUR = {"search": 12.0, "social": 6.0, "display": 3.0}
CTR = {"search": 0.05, "social": 0.012, "display": 0.004}
TIER_CODE = {"none": 0, "silver": 1, "gold": 2}
EMBEDDING_DIM = 16
Row = dict[str, Any]

TS = pa.timestamp("ms", tz="UTC")


def field(name: str, type_: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


# --- reference data (committed CSV) ------------------------------------------------------------


def read_csv(lake: Path, relpath: str) -> list[Row]:
    with open(lake / relpath, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_reference(lake: Path) -> dict[str, list[Row]]:
    stores = read_csv(lake, "raw/pos/stores/stores.csv")
    for s in stores:
        s["store_id"] = int(s["store_id"])
    products = read_csv(lake, "raw/ecommerce/products/products.csv")
    for p in products:
        p["unit_price_eur"] = float(p["unit_price_eur"])
        p["active"] = p["active"] == "true"
    customers = read_csv(lake, "raw/crm/customers/customers.csv")
    for c in customers:
        c["marketing_opt_in"] = c["marketing_opt_in"] == "true"
    campaigns = read_csv(lake, "raw/marketing/campaigns/campaigns.csv")
    for c in campaigns:
        c["start_date"] = date.fromisoformat(c["start_date"])
        c["end_date"] = date.fromisoformat(c["end_date"])
        c["budget_eur"] = float(c["budget_eur"])
    email_events = read_csv(lake, "raw/marketing/email_events/email_events.csv")
    for e in email_events:
        e["event_at"] = datetime.fromisoformat(e["event_at"].replace("Z", "+00:00"))
    return {
        "stores": stores,
        "products": products,
        "customers": customers,
        "campaigns": campaigns,
        "email_events": email_events,
    }


# --- simulation of two weeks of trading (the raw layer) ----------------------------------------


def pick_skus(rng: random.Random, products: list[Row], n: int) -> list[str]:
    """n distinct active SKUs, weighted by category popularity."""
    active = [p for p in products if p["active"]]
    weights = [CATEGORY_WEIGHT[p["category"]] for p in active]
    chosen: list[str] = []
    while len(chosen) < n:
        sku = rng.choices(active, weights)[0]["sku"]
        if sku not in chosen:
            chosen.append(sku)
    return chosen


def at(day: date, seconds: int) -> datetime:
    return datetime.combine(day, time(), UTC) + timedelta(seconds=seconds)


def simulate_pos(rng: random.Random, ref: dict[str, list[Row]]) -> list[Row]:
    products = {p["sku"]: p for p in ref["products"]}
    tiers = {c["customer_id"]: c["loyalty_tier"] for c in ref["customers"]}
    lines: list[Row] = []
    for day in DAYS:
        weekend = day.weekday() >= 5
        for store in ref["stores"]:
            n_tx = rng.randint(0, 2) + weekend + (store["store_format"] == "flagship")
            local = [c for c in ref["customers"] if c["city"] == store["city"]] or ref["customers"]
            for seq, secs in enumerate(
                sorted(rng.randrange(8 * 3600, 19 * 3600) for _ in range(n_tx))
            ):
                customer = rng.choice(local)["customer_id"] if rng.random() < 0.45 else None
                payment = rng.choices(["card", "cash", "mobile"], [6, 2, 2])[0]
                cashier = f"{store['store_code']}-E{rng.randint(1, 4):02d}"
                skus = pick_skus(rng, ref["products"], rng.choice([1, 1, 1, 2, 2, 3]))
                for line_no, sku in enumerate(skus, 1):
                    p = products[sku]
                    qty = rng.choice([1, 1, 2, 3]) if p["subcategory"] in MULTI_UNIT else 1
                    if store["store_format"] == "outlet":
                        rate = 0.2
                    elif customer and tiers[customer] == "gold":
                        rate = 0.1
                    else:
                        rate = 0.0
                    lines.append(
                        {
                            "transaction_id": f"{store['store_code']}-{day:%Y%m%d}-{seq + 1:04d}",
                            "line_no": line_no,
                            "store_id": store["store_id"],
                            "sku": sku,
                            "quantity": qty,
                            "unit_price_eur": p["unit_price_eur"],
                            "discount_eur": round(qty * p["unit_price_eur"] * rate, 2),
                            "payment_method": payment,
                            "loyalty_customer_id": customer,
                            "cashier_id": cashier,
                            "sold_at": at(day, secs),
                        }
                    )
    return lines


def simulate_web(rng: random.Random, ref: dict[str, list[Row]]) -> tuple[list[Row], list[Row]]:
    """Clickstream events and web order lines; e-mail clicks open a session of their own."""
    products = {p["sku"]: p for p in ref["products"]}
    countries = {c["customer_id"]: c["country"] for c in ref["customers"]}
    email_clicks: dict[date, list[Row]] = defaultdict(list)
    for e in ref["email_events"]:
        if e["event_type"] == "clicked":
            email_clicks[e["event_at"].date()].append(e)
    events: list[Row] = []
    order_lines: list[Row] = []
    order_no = 100_000
    for day in DAYS:
        paid = [
            c
            for c in ref["campaigns"]
            if c["channel"] in PAID_CHANNEL_PLATFORM and c["start_date"] <= day <= c["end_date"]
        ]
        starts = [(e["event_at"], e["customer_id"], e["campaign_id"]) for e in email_clicks[day]]
        for _ in range(rng.randint(4, 7)):
            start = at(day, rng.randrange(7 * 3600, 22 * 3600))
            customer = rng.choice(ref["customers"])["customer_id"] if rng.random() < 0.55 else None
            utm = rng.choice(paid)["campaign_id"] if paid and rng.random() < 0.45 else None
            starts.append((start, customer, utm))
        starts.sort(key=lambda s: (s[0], s[1] or "", s[2] or ""))
        for n, (start, customer, utm) in enumerate(starts, 1):
            session_id = f"S{day:%Y%m%d}-{n:03d}"
            device = rng.choices(["mobile", "desktop", "tablet"], [6, 3, 1])[0]
            viewed = pick_skus(rng, ref["products"], rng.randint(1, 4))
            landing = f"/c/{products[viewed[0]]['category'].lower()}" if utm else "/"
            steps: list[tuple[str, str, str | None]] = [("page_view", landing, None)]
            steps += [("product_view", f"/p/{sku}", sku) for sku in viewed]
            cart = [sku for sku in viewed if rng.random() < 0.35]
            steps += [("add_to_cart", "/cart", sku) for sku in cart]
            bought = bool(cart) and rng.random() < (0.7 if customer else 0.4)
            if bought:
                steps += [("checkout", "/checkout", None), ("purchase", "/checkout/done", None)]
            t = start
            for k, (event_type, page, sku) in enumerate(steps, 1):
                events.append(
                    {
                        "event_id": f"{session_id}-{k:02d}",
                        "session_id": session_id,
                        "customer_id": customer,
                        "event_type": event_type,
                        "page": page,
                        "sku": sku,
                        "utm_campaign": utm,
                        "device": device,
                        "event_at": t,
                    }
                )
                t += timedelta(seconds=rng.randint(5, 150))
            if not bought:
                continue
            order_no += 1
            subtotal = 0.0
            lines = []
            for line_no, sku in enumerate(cart, 1):
                p = products[sku]
                qty = rng.choice([1, 2]) if p["subcategory"] in MULTI_UNIT else 1
                promo = utm is not None and utm in {e["campaign_id"] for e in email_clicks[day]}
                discount = round(qty * p["unit_price_eur"] * (0.1 if promo else 0.0), 2)
                subtotal += qty * p["unit_price_eur"] - discount
                lines.append((line_no, sku, qty, p["unit_price_eur"], discount))
            shipping = 0.0 if subtotal >= 60 else 4.95
            for line_no, sku, qty, price, discount in lines:
                order_lines.append(
                    {
                        "order_id": f"W{order_no}",
                        "order_line": line_no,
                        "customer_id": customer,
                        "sku": sku,
                        "quantity": qty,
                        "unit_price_eur": price,
                        "discount_eur": discount,
                        "order_shipping_eur": shipping,
                        "ship_country": countries.get(
                            customer or "", rng.choice(["PT", "ES", "FR"])
                        ),
                        "session_id": session_id,
                        "utm_campaign": utm,
                        "order_status": "paid",
                        "ordered_at": t,
                    }
                )
    return events, order_lines


def simulate_ad_spend(rng: random.Random, ref: dict[str, list[Row]]) -> list[Row]:
    rows = []
    extracted = datetime(2025, 6, 16, 3, 10, tzinfo=UTC)
    for day in DAYS:
        for c in ref["campaigns"]:
            if (
                c["channel"] not in PAID_CHANNEL_PLATFORM
                or not c["start_date"] <= day <= c["end_date"]
            ):
                continue
            days = (c["end_date"] - c["start_date"]).days + 1
            spend = round(c["budget_eur"] / days * rng.uniform(0.85, 1.1), 2)
            impressions = int(spend / CPM_EUR[c["channel"]] * 1000)
            clicks = int(impressions * CTR[c["channel"]] * rng.uniform(0.8, 1.2))
            rows.append(
                {
                    "activity_date": day,
                    "campaign_id": c["campaign_id"],
                    "platform": PAID_CHANNEL_PLATFORM[c["channel"]],
                    "impressions": impressions,
                    "clicks": clicks,
                    "spend_eur": spend,
                    "currency": "EUR",
                    "extracted_at": extracted,
                }
            )
    return rows


# --- staging -----------------------------------------------------------------------------------


def stg_transactions(pos: list[Row], web: list[Row], products: list[Row]) -> list[Row]:
    category = {p["sku"]: p["category"] for p in products}
    rows = []
    for r in pos:
        rows.append(
            {
                "sale_id": r["transaction_id"],
                "line_no": r["line_no"],
                "channel": "store",
                "store_id": r["store_id"],
                "customer_id": r["loyalty_customer_id"],
                "sku": r["sku"],
                "category": category[r["sku"]],
                "quantity": r["quantity"],
                "gross_amount_eur": round(r["quantity"] * r["unit_price_eur"], 2),
                "discount_eur": r["discount_eur"],
                "sold_at": r["sold_at"],
            }
        )
    for r in web:
        rows.append(
            {
                "sale_id": r["order_id"],
                "line_no": r["order_line"],
                "channel": "web",
                "store_id": None,
                "customer_id": r["customer_id"],
                "sku": r["sku"],
                "category": category[r["sku"]],
                "quantity": r["quantity"],
                "gross_amount_eur": round(r["quantity"] * r["unit_price_eur"], 2),
                "discount_eur": r["discount_eur"],
                "sold_at": r["ordered_at"],
            }
        )
    for r in rows:
        r["net_amount_eur"] = round(r["gross_amount_eur"] - r["discount_eur"], 2)
        r["sale_date"] = r["sold_at"].date()
    return rows


def age_band(birth: date) -> str:
    age = (FEATURE_DATE - birth).days // 365
    for upper, band in ((24, "18-24"), (34, "25-34"), (44, "35-44"), (54, "45-54"), (64, "55-64")):
        if age <= upper:
            return band
    return "65+"


def stg_customers(customers: list[Row], email_events: list[Row]) -> list[Row]:
    unsubscribed = {e["customer_id"] for e in email_events if e["event_type"] == "unsubscribed"}
    return [
        {
            "customer_id": c["customer_id"],
            "email_sha256": hashlib.sha256(c["email"].strip().lower().encode()).hexdigest(),
            "age_band": age_band(date.fromisoformat(c["birth_date"])),
            "city": c["city"],
            "country": c["country"],
            "signup_date": date.fromisoformat(c["signup_date"]),
            "loyalty_tier": c["loyalty_tier"],
            "marketing_opt_in": c["marketing_opt_in"] and c["customer_id"] not in unsubscribed,
        }
        for c in customers
    ]


def stg_products(products: list[Row]) -> list[Row]:
    return [
        {
            "sku": p["sku"],
            "product_name": p["product_name"],
            "category": p["category"],
            "subcategory": p["subcategory"],
            "brand": p["brand"],
            "list_price_eur": p["unit_price_eur"],
            "launched_on": date.fromisoformat(p["launched_on"]),
            "is_active": p["active"],
        }
        for p in products
    ]


def stg_sessions(events: list[Row], orders: list[Row]) -> list[Row]:
    order_of = {o["session_id"]: o["order_id"] for o in orders}
    by_session: dict[str, list[Row]] = defaultdict(list)
    for e in events:
        by_session[e["session_id"]].append(e)
    rows = []
    for sid in sorted(by_session):
        evs = by_session[sid]
        types = [e["event_type"] for e in evs]
        rows.append(
            {
                "session_id": sid,
                "customer_id": evs[0]["customer_id"],
                "device": evs[0]["device"],
                "utm_campaign": evs[0]["utm_campaign"],
                "started_at": evs[0]["event_at"],
                "ended_at": evs[-1]["event_at"],
                "page_views": len(evs),
                "products_viewed": types.count("product_view"),
                "added_to_cart": "add_to_cart" in types,
                "purchased": "purchase" in types,
                "order_id": order_of.get(sid),
            }
        )
    return rows


def stg_email_events(email_events: list[Row]) -> list[Row]:
    return [
        {
            "event_id": e["event_id"],
            "campaign_id": e["campaign_id"],
            "customer_id": e["customer_id"],
            "event_type": e["event_type"],
            "event_at": e["event_at"],
            "event_date": e["event_at"].date(),
        }
        for e in email_events
    ]


def stg_campaign_performance(
    ad_spend: list[Row], email_events: list[Row], campaigns: list[Row]
) -> list[Row]:
    channel = {c["campaign_id"]: c["channel"] for c in campaigns}
    budget = {c["campaign_id"]: c["budget_eur"] for c in campaigns}
    perf: dict[tuple[date, str], Row] = {}

    def row(day: date, cid: str) -> Row:
        return perf.setdefault(
            (day, cid),
            {
                "activity_date": day,
                "campaign_id": cid,
                "channel": channel[cid],
                "impressions": 0,
                "clicks": 0,
                "spend_eur": 0.0,
                "emails_sent": 0,
                "emails_opened": 0,
                "emails_clicked": 0,
            },
        )

    for a in ad_spend:
        r = row(a["activity_date"], a["campaign_id"])
        r["impressions"] += a["impressions"]
        r["clicks"] += a["clicks"]
        r["spend_eur"] = round(r["spend_eur"] + a["spend_eur"], 2)
    for e in email_events:
        r = row(e["event_at"].date(), e["campaign_id"])
        if e["event_type"] == "sent":
            r["emails_sent"] += 1
            # an e-mail campaign's budget (design, production) is booked on its send day
            r["spend_eur"] = budget[e["campaign_id"]]
        elif e["event_type"] == "opened":
            r["emails_opened"] += 1
        elif e["event_type"] == "clicked":
            r["emails_clicked"] += 1
            r["clicks"] += 1
    return [perf[k] for k in sorted(perf)]


# --- gold --------------------------------------------------------------------------------------


def sales_daily(sales: list[Row]) -> list[Row]:
    groups: dict[tuple[date, str, int], list[Row]] = defaultdict(list)
    for s in sales:
        groups[(s["sale_date"], s["channel"], s["store_id"] or 0)].append(s)
    rows = []
    for (day, channel, store_id), lines in sorted(groups.items()):
        tx = len({s["sale_id"] for s in lines})
        net = round(sum(s["net_amount_eur"] for s in lines), 2)
        rows.append(
            {
                "sale_date": day,
                "channel": channel,
                "store_id": store_id or None,
                "transactions": tx,
                "units": sum(s["quantity"] for s in lines),
                "gross_revenue_eur": round(sum(s["gross_amount_eur"] for s in lines), 2),
                "discount_eur": round(sum(s["discount_eur"] for s in lines), 2),
                "net_revenue_eur": net,
                "avg_basket_eur": round(net / tx, 2),
            }
        )
    return rows


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def product_sales_weekly(sales: list[Row], products: list[Row]) -> list[Row]:
    category = {p["sku"]: p["category"] for p in products}
    agg: dict[tuple[str, str], Row] = {}
    for s in sales:
        key = (iso_week(s["sale_date"]), s["sku"])
        r = agg.setdefault(
            key,
            {
                "iso_week": key[0],
                "sku": key[1],
                "category": category[key[1]],
                "units": 0,
                "store_units": 0,
                "web_units": 0,
                "net_revenue_eur": 0.0,
            },
        )
        r["units"] += s["quantity"]
        r[f"{s['channel']}_units"] += s["quantity"]
        r["net_revenue_eur"] = round(r["net_revenue_eur"] + s["net_amount_eur"], 2)
    return [agg[k] for k in sorted(agg)]


def customer_360(
    customers: list[Row], sales: list[Row], sessions: list[Row], emails: list[Row]
) -> list[Row]:
    rows = []
    for c in customers:
        cid = c["customer_id"]
        mine = [s for s in sales if s["customer_id"] == cid]
        orders = {s["sale_id"]: s for s in mine}
        store_orders = len({s["sale_id"] for s in mine if s["channel"] == "store"})
        web_orders = len(orders) - store_orders
        my_emails = [e for e in emails if e["customer_id"] == cid]
        preferred = ("web" if web_orders > store_orders else "store") if orders else None
        rows.append(
            {
                "customer_id": cid,
                "country": c["country"],
                "age_band": c["age_band"],
                "loyalty_tier": c["loyalty_tier"],
                "marketing_opt_in": c["marketing_opt_in"],
                "first_purchase_at": min((s["sold_at"] for s in mine), default=None),
                "last_purchase_at": max((s["sold_at"] for s in mine), default=None),
                "orders": len(orders),
                "store_orders": store_orders,
                "web_orders": web_orders,
                "units": sum(s["quantity"] for s in mine),
                "net_revenue_eur": round(sum(s["net_amount_eur"] for s in mine), 2),
                "web_sessions": sum(1 for s in sessions if s["customer_id"] == cid),
                "emails_received": sum(1 for e in my_emails if e["event_type"] == "sent"),
                "emails_opened": sum(1 for e in my_emails if e["event_type"] == "opened"),
                "emails_clicked": sum(1 for e in my_emails if e["event_type"] == "clicked"),
                "preferred_channel": preferred,
            }
        )
    return rows


def campaign_roi(
    campaigns: list[Row], perf: list[Row], sessions: list[Row], sales: list[Row]
) -> list[Row]:
    revenue_of: dict[str, float] = defaultdict(float)
    for s in sales:
        if s["channel"] == "web":
            revenue_of[s["sale_id"]] += s["net_amount_eur"]
    rows = []
    for c in campaigns:
        cid = c["campaign_id"]
        p = [r for r in perf if r["campaign_id"] == cid]
        touched = [s for s in sessions if s["utm_campaign"] == cid]
        orders = [s["order_id"] for s in touched if s["order_id"]]
        spend = round(sum(r["spend_eur"] for r in p), 2)
        revenue = round(sum(revenue_of[o] for o in orders), 2)
        rows.append(
            {
                "campaign_id": cid,
                "campaign_name": c["campaign_name"],
                "channel": c["channel"],
                "objective": c["objective"],
                "period_start": DAYS[0],
                "period_end": DAYS[-1],
                "spend_eur": spend,
                "impressions": sum(r["impressions"] for r in p),
                "clicks": sum(r["clicks"] for r in p),
                "sessions": len(touched),
                "attributed_orders": len(orders),
                "attributed_revenue_eur": revenue,
                "roas": round(revenue / spend, 3) if spend else None,
            }
        )
    return rows


# --- ml ----------------------------------------------------------------------------------------


def customer_features(c360: list[Row], customers: list[Row]) -> list[Row]:
    signup = {c["customer_id"]: c["signup_date"] for c in customers}
    rows = []
    for c in c360:
        last = c["last_purchase_at"]
        received = c["emails_received"]
        rows.append(
            {
                "customer_id": c["customer_id"],
                "feature_date": FEATURE_DATE,
                "recency_days": (FEATURE_DATE - last.date()).days if last else None,
                "frequency_14d": c["orders"],
                "monetary_14d_eur": c["net_revenue_eur"],
                "avg_basket_eur": round(c["net_revenue_eur"] / c["orders"], 2)
                if c["orders"]
                else None,
                "web_sessions_14d": c["web_sessions"],
                "email_open_rate": round(c["emails_opened"] / received, 3) if received else None,
                "loyalty_tier_code": TIER_CODE[c["loyalty_tier"]],
                "tenure_days": (FEATURE_DATE - signup[c["customer_id"]]).days,
                "is_opted_in": c["marketing_opt_in"],
            }
        )
    return rows


def store_demand_features(daily: list[Row], stores: list[Row]) -> list[Row]:
    by_key = {(r["store_id"], r["sale_date"]): r for r in daily if r["channel"] == "store"}
    rows = []
    for store in stores:
        sid = store["store_id"]
        for day in DAYS[7:]:
            past = [by_key.get((sid, day - timedelta(days=k))) for k in range(1, 8)]
            lag = by_key.get((sid, day - timedelta(days=7)))
            rows.append(
                {
                    "store_id": sid,
                    "feature_date": day,
                    "day_of_week": day.isoweekday(),
                    "is_weekend": day.weekday() >= 5,
                    "transactions_lag_7d": lag["transactions"] if lag else 0,
                    "units_lag_7d": lag["units"] if lag else 0,
                    "net_revenue_lag_7d_eur": lag["net_revenue_eur"] if lag else 0.0,
                    "units_rolling_7d_mean": round(sum(r["units"] for r in past if r) / 7, 3),
                    "net_revenue_rolling_7d_mean_eur": round(
                        sum(r["net_revenue_eur"] for r in past if r) / 7, 2
                    ),
                }
            )
    return rows


def unit_vector(seed: str) -> list[float]:
    rng = random.Random(seed)
    v = [rng.gauss(0, 1) for _ in range(EMBEDDING_DIM)]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def product_embeddings(products: list[Row], sales: list[Row]) -> list[Row]:
    """Toy product vectors: category + subcategory + brand directions, nudged by co-purchase."""
    baskets: dict[str, list[str]] = defaultdict(list)
    for s in sales:
        baskets[s["sale_id"]].append(s["sku"])
    rows = []
    for p in products:
        parts = [
            (1.0, unit_vector(f"category:{p['category']}")),
            (0.6, unit_vector(f"subcategory:{p['subcategory']}")),
            (0.3, unit_vector(f"brand:{p['brand']}")),
            (0.2, unit_vector(f"sku:{p['sku']}")),
        ]
        partners = sorted(
            {o for b in baskets.values() if p["sku"] in b for o in b if o != p["sku"]}
        )
        parts += [(0.1, unit_vector(f"sku:{o}")) for o in partners]
        v = [sum(w * vec[i] for w, vec in parts) for i in range(EMBEDDING_DIM)]
        norm = math.sqrt(sum(x * x for x in v))
        rows.append(
            {
                "sku": p["sku"],
                "model_version": "prod2vec-2025-06-15",
                "embedding": [round(x / norm, 5) for x in v],
            }
        )
    return rows


def churn_scores(features: list[Row]) -> list[Row]:
    """Scores from the churn model's published coefficients (see ml/models/churn_model)."""
    rows = []
    scored_at = datetime(2025, 6, 16, 5, 30, tzinfo=UTC)
    for f in features:
        z = (
            -0.2
            + (1.6 if f["recency_days"] is None else 0.06 * f["recency_days"])
            - 0.45 * f["frequency_14d"]
            - 0.9 * (f["email_open_rate"] or 0.0)
            - 0.35 * f["loyalty_tier_code"]
            + (0.3 if not f["is_opted_in"] else 0.0)
            - 0.0002 * f["tenure_days"]
        )
        p = round(1 / (1 + math.exp(-z)), 4)
        rows.append(
            {
                "customer_id": f["customer_id"],
                "scored_at": scored_at,
                "model_version": "churn-gbm-1.3.0",
                "churn_probability": p,
                "risk_band": "high" if p >= 0.6 else "medium" if p >= 0.3 else "low",
            }
        )
    return rows


# --- schemas -----------------------------------------------------------------------------------

S = pa.string()
I32 = pa.int32()
I64 = pa.int64()
F64 = pa.float64()
D = pa.date32()
B = pa.bool_()

SCHEMAS: dict[str, pa.Schema] = {
    "pos_transactions_raw": pa.schema(
        [
            field("transaction_id", S, False),
            field("line_no", I32, False),
            field("store_id", I32, False),
            field("sku", S, False),
            field("quantity", I32, False),
            field("unit_price_eur", F64, False),
            field("discount_eur", F64, False),
            field("payment_method", S),
            field("loyalty_customer_id", S),
            field("cashier_id", S),
            field("sold_at", TS, False),
        ]
    ),
    "web_orders_raw": pa.schema(
        [
            field("order_id", S, False),
            field("order_line", I32, False),
            field("customer_id", S),
            field("sku", S, False),
            field("quantity", I32, False),
            field("unit_price_eur", F64, False),
            field("discount_eur", F64, False),
            field("order_shipping_eur", F64),
            field("ship_country", S),
            field("session_id", S),
            field("utm_campaign", S),
            field("order_status", S),
            field("ordered_at", TS, False),
        ]
    ),
    "web_clickstream_raw": pa.schema(
        [
            field("event_id", S, False),
            field("session_id", S, False),
            field("customer_id", S),
            field("event_type", S, False),
            field("page", S),
            field("sku", S),
            field("utm_campaign", S),
            field("device", S),
            field("event_at", TS, False),
        ]
    ),
    "ad_spend_raw": pa.schema(
        [
            field("activity_date", D, False),
            field("campaign_id", S, False),
            field("platform", S, False),
            field("impressions", I64),
            field("clicks", I64),
            field("spend_eur", F64),
            field("currency", S),
            field("extracted_at", TS),
        ]
    ),
    "stg_transactions": pa.schema(
        [
            field("sale_id", S, False),
            field("line_no", I32, False),
            field("channel", S, False),
            field("store_id", I32),
            field("customer_id", S),
            field("sku", S, False),
            field("category", S),
            field("quantity", I32, False),
            field("gross_amount_eur", F64, False),
            field("discount_eur", F64, False),
            field("net_amount_eur", F64, False),
            field("sold_at", TS, False),
            field("sale_date", D, False),
        ]
    ),
    "stg_customers": pa.schema(
        [
            field("customer_id", S, False),
            field("email_sha256", S),
            field("age_band", S),
            field("city", S),
            field("country", S),
            field("signup_date", D),
            field("loyalty_tier", S),
            field("marketing_opt_in", B),
        ]
    ),
    "stg_products": pa.schema(
        [
            field("sku", S, False),
            field("product_name", S),
            field("category", S),
            field("subcategory", S),
            field("brand", S),
            field("list_price_eur", F64),
            field("launched_on", D),
            field("is_active", B),
        ]
    ),
    "stg_sessions": pa.schema(
        [
            field("session_id", S, False),
            field("customer_id", S),
            field("device", S),
            field("utm_campaign", S),
            field("started_at", TS, False),
            field("ended_at", TS, False),
            field("page_views", I32),
            field("products_viewed", I32),
            field("added_to_cart", B),
            field("purchased", B),
            field("order_id", S),
        ]
    ),
    "stg_email_events": pa.schema(
        [
            field("event_id", S, False),
            field("campaign_id", S, False),
            field("customer_id", S, False),
            field("event_type", S, False),
            field("event_at", TS, False),
            field("event_date", D, False),
        ]
    ),
    "stg_campaign_performance": pa.schema(
        [
            field("activity_date", D, False),
            field("campaign_id", S, False),
            field("channel", S),
            field("impressions", I64),
            field("clicks", I64),
            field("spend_eur", F64),
            field("emails_sent", I32),
            field("emails_opened", I32),
            field("emails_clicked", I32),
        ]
    ),
    "sales_daily": pa.schema(
        [
            field("sale_date", D, False),
            field("channel", S, False),
            field("store_id", I32),
            field("transactions", I32),
            field("units", I32),
            field("gross_revenue_eur", F64),
            field("discount_eur", F64),
            field("net_revenue_eur", F64),
            field("avg_basket_eur", F64),
        ]
    ),
    "product_sales_weekly": pa.schema(
        [
            field("iso_week", S, False),
            field("sku", S, False),
            field("category", S),
            field("units", I32),
            field("store_units", I32),
            field("web_units", I32),
            field("net_revenue_eur", F64),
        ]
    ),
    "customer_360": pa.schema(
        [
            field("customer_id", S, False),
            field("country", S),
            field("age_band", S),
            field("loyalty_tier", S),
            field("marketing_opt_in", B),
            field("first_purchase_at", TS),
            field("last_purchase_at", TS),
            field("orders", I32),
            field("store_orders", I32),
            field("web_orders", I32),
            field("units", I32),
            field("net_revenue_eur", F64),
            field("web_sessions", I32),
            field("emails_received", I32),
            field("emails_opened", I32),
            field("emails_clicked", I32),
            field("preferred_channel", S),
        ]
    ),
    "campaign_roi": pa.schema(
        [
            field("campaign_id", S, False),
            field("campaign_name", S),
            field("channel", S),
            field("objective", S),
            field("period_start", D),
            field("period_end", D),
            field("spend_eur", F64),
            field("impressions", I64),
            field("clicks", I64),
            field("sessions", I32),
            field("attributed_orders", I32),
            field("attributed_revenue_eur", F64),
            field("roas", F64),
        ]
    ),
    "customer_features": pa.schema(
        [
            field("customer_id", S, False),
            field("feature_date", D, False),
            field("recency_days", I32),
            field("frequency_14d", I32),
            field("monetary_14d_eur", F64),
            field("avg_basket_eur", F64),
            field("web_sessions_14d", I32),
            field("email_open_rate", F64),
            field("loyalty_tier_code", I32),
            field("tenure_days", I32),
            field("is_opted_in", B),
        ]
    ),
    "store_demand_features": pa.schema(
        [
            field("store_id", I32, False),
            field("feature_date", D, False),
            field("day_of_week", I32),
            field("is_weekend", B),
            field("transactions_lag_7d", I32),
            field("units_lag_7d", I32),
            field("net_revenue_lag_7d_eur", F64),
            field("units_rolling_7d_mean", F64),
            field("net_revenue_rolling_7d_mean_eur", F64),
        ]
    ),
    "product_embeddings": pa.schema(
        [
            field("sku", S, False),
            field("model_version", S, False),
            field("embedding", pa.list_(pa.float32(), EMBEDDING_DIM), False),
        ]
    ),
    "churn_scores": pa.schema(
        [
            field("customer_id", S, False),
            field("scored_at", TS, False),
            field("model_version", S, False),
            field("churn_probability", F64, False),
            field("risk_band", S, False),
        ]
    ),
}


# --- the build ---------------------------------------------------------------------------------


def build(lake: Path) -> dict[str, pa.Table]:
    """Every Parquet file of the lake, by path relative to the lake."""
    ref = load_reference(lake)
    rng = random.Random(SEED)
    pos = simulate_pos(rng, ref)
    events, web = simulate_web(rng, ref)
    ads = simulate_ad_spend(rng, ref)

    sales = stg_transactions(pos, web, ref["products"])
    customers = stg_customers(ref["customers"], ref["email_events"])
    sessions = stg_sessions(events, web)
    emails = stg_email_events(ref["email_events"])
    perf = stg_campaign_performance(ads, ref["email_events"], ref["campaigns"])
    daily = sales_daily(sales)
    c360 = customer_360(customers, sales, sessions, emails)
    features = customer_features(c360, customers)

    def t(schema: str, rows: list[Row]) -> pa.Table:
        return pa.Table.from_pylist(rows, schema=SCHEMAS[schema])

    def by_days(rows: list[Row], key: str, days: list[date]) -> list[Row]:
        return [r for r in rows if r[key].date() in days]

    week23, week24 = DAYS[:7], DAYS[7:]
    files = {
        # raw: three POS extracts (Mon-Fri, Sat-Wed, Thu-Sun), two web-order extracts
        "raw/pos/transactions/part-0000.parquet": t(
            "pos_transactions_raw", by_days(pos, "sold_at", DAYS[:5])
        ),
        "raw/pos/transactions/part-0001.parquet": t(
            "pos_transactions_raw", by_days(pos, "sold_at", DAYS[5:10])
        ),
        "raw/pos/transactions/part-0002.parquet": t(
            "pos_transactions_raw", by_days(pos, "sold_at", DAYS[10:])
        ),
        "raw/ecommerce/orders/part-0000.parquet": t(
            "web_orders_raw", by_days(web, "ordered_at", week23)
        ),
        "raw/ecommerce/orders/part-0001.parquet": t(
            "web_orders_raw", by_days(web, "ordered_at", week24)
        ),
        "raw/marketing/ad_spend/ad_spend.parquet": t("ad_spend_raw", ads),
        # staging
        "staging/sales/stg_transactions/part-0000.parquet": t(
            "stg_transactions", [s for s in sales if s["channel"] == "store"]
        ),
        "staging/sales/stg_transactions/part-0001.parquet": t(
            "stg_transactions", [s for s in sales if s["channel"] == "web"]
        ),
        "staging/customers/stg_customers/stg_customers.parquet": t("stg_customers", customers),
        "staging/products/stg_products/stg_products.parquet": t(
            "stg_products", stg_products(ref["products"])
        ),
        "staging/web/stg_sessions/stg_sessions.parquet": t("stg_sessions", sessions),
        "staging/marketing/stg_email_events/stg_email_events.parquet": t(
            "stg_email_events", emails
        ),
        "staging/marketing/stg_campaign_performance/stg_campaign_performance.parquet": t(
            "stg_campaign_performance", perf
        ),
        # gold
        "gold/sales/sales_daily/part-0000.parquet": t(
            "sales_daily", [r for r in daily if r["sale_date"] in week23]
        ),
        "gold/sales/sales_daily/part-0001.parquet": t(
            "sales_daily", [r for r in daily if r["sale_date"] in week24]
        ),
        "gold/sales/product_sales_weekly/product_sales_weekly.parquet": t(
            "product_sales_weekly", product_sales_weekly(sales, ref["products"])
        ),
        "gold/customers/customer_360/customer_360.parquet": t("customer_360", c360),
        # campaign_roi's manifest sits in gold/marketing/campaign_roi/ and points here
        "gold/marketing/campaign_roi_output/part-0000.parquet": t(
            "campaign_roi", campaign_roi(ref["campaigns"], perf, sessions, sales)
        ),
        # ml
        "ml/features/customer_features/customer_features.parquet": t("customer_features", features),
        "ml/features/store_demand_features/store_demand_features.parquet": t(
            "store_demand_features", store_demand_features(daily, ref["stores"])
        ),
        "ml/embeddings/product_embeddings/product_embeddings.parquet": t(
            "product_embeddings", product_embeddings(ref["products"], sales)
        ),
        "ml/scoring/churn_scores/churn_scores.parquet": t("churn_scores", churn_scores(features)),
    }
    # clickstream lands as Hive-style daily partitions
    for day in DAYS:
        files[f"raw/ecommerce/clickstream/date={day}/events.parquet"] = t(
            "web_clickstream_raw", by_days(events, "event_at", [day])
        )
    return files


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue().to_pybytes()


def main(argv: list[str] | None = None) -> int:
    default_lake = Path(__file__).resolve().parent / "lake"
    parser = argparse.ArgumentParser(
        description=(
            "Write the Parquet files of the Cairn example lake. Deterministic and idempotent: "
            "files whose content is unchanged are not rewritten."
        )
    )
    parser.add_argument(
        "--lake",
        type=Path,
        default=default_lake,
        help=f"root of the example lake (default: {default_lake})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if any Parquet file is missing or differs",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only report problems")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")

    lake: Path = args.lake
    if not (lake / "raw/pos/stores/stores.csv").is_file():
        log.error(
            "%s does not look like the example lake (raw/pos/stores/stores.csv missing)", lake
        )
        return 2
    written = unchanged = stale = 0
    total_bytes = 0
    for relpath, table in sorted(build(lake).items()):
        data = parquet_bytes(table)
        total_bytes += len(data)
        path = lake / relpath
        if path.is_file() and path.read_bytes() == data:
            unchanged += 1
            continue
        if args.check:
            stale += 1
            log.warning("out of date: %s", relpath)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        written += 1
        log.info("wrote %s (%d rows, %.1f KB)", relpath, table.num_rows, len(data) / 1024)
    log.info(
        "%d Parquet files, %.1f KB: %d written, %d unchanged%s",
        written + unchanged + stale,
        total_bytes / 1024,
        written,
        unchanged,
        f", {stale} out of date" if args.check else "",
    )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
