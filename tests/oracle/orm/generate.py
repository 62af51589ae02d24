#!/usr/bin/env python3
"""Generates the ORM part of the isolation oracle's corpus with SQLAlchemy.

The models below are what a tenant-unaware application would declare for the
oracle schema (tests/oracle/schema.rs): no `tenant_id` anywhere, primary keys
on `id` alone. tenantgate must make every statement SQLAlchemy produces for
them see and change only the session tenant's rows.

Regenerate (the Rust tests read the committed output; they never run Python):

    pip install sqlalchemy
    python3 tests/oracle/orm/generate.py

writes, next to this script:

* `sqlalchemy.sql`        every statement with literal binds (simple and
                          extended protocol, no parameters);
* `sqlalchemy_params.sql` those of the same statements that have bound
                          values, with `$n` parameters (SQLAlchemy's
                          `numeric_dollar` paramstyle, as asyncpg uses) and
                          the values (`-- @params type:value …`).

File format (read by tests/oracle/corpus.rs): entries are separated by blank
lines; `-- @name`, `-- @kind read|write`, `-- @params` and `-- @ordered` lines
carry metadata; everything else is the statement.
"""

import datetime
import decimal
import os

import sqlalchemy
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal_column,
    not_,
    or_,
    select,
    true,
    union,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    aliased,
    contains_eager,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)


class Base(DeclarativeBase):
    pass


class Plan(Base):
    __tablename__ = "plans"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    monthly_price = mapped_column(Numeric(10, 2))
    features = mapped_column(JSONB)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    email = mapped_column(Text, nullable=True)
    tier = mapped_column(Text, nullable=True)
    plan_id = mapped_column(ForeignKey("plans.id"), nullable=True)
    active = mapped_column(Boolean)
    created_at = mapped_column(DateTime(timezone=True))
    profile = mapped_column(JSONB, nullable=True)
    plan = relationship(Plan)
    orders = relationship("Order", back_populates="customer")


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku = mapped_column(Text)
    name = mapped_column(Text)
    price = mapped_column(Numeric(10, 2))
    stock = mapped_column(Integer)
    discontinued = mapped_column(Boolean)
    tags = mapped_column(JSONB, nullable=True)


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id = mapped_column(ForeignKey("customers.id"))
    status = mapped_column(Text)
    ordered_at = mapped_column(DateTime(timezone=True))
    shipped_at = mapped_column(DateTime(timezone=True), nullable=True)
    total = mapped_column(Numeric(12, 2))
    note = mapped_column(Text, nullable=True)
    customer = relationship(Customer, back_populates="orders")
    items = relationship("OrderItem", back_populates="order")


class OrderItem(Base):
    __tablename__ = "order_items"
    order_id = mapped_column(ForeignKey("orders.id"), primary_key=True)
    line_no = mapped_column(Integer, primary_key=True)
    product_id = mapped_column(ForeignKey("products.id"))
    quantity = mapped_column(Integer)
    unit_price = mapped_column(Numeric(10, 2))
    discount = mapped_column(Numeric(4, 2), nullable=True)
    order = relationship(Order, back_populates="items")
    product = relationship(Product)


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email = mapped_column(Text)
    display_name = mapped_column(Text)
    login_count = mapped_column(Integer)


def ts(day, hour=0):
    return datetime.datetime(2024, 3, day, hour, 0, tzinfo=datetime.timezone.utc)


D = decimal.Decimal

# (name, kind, ordered, statement). `ordered`: the result order is fully
# determined (ORDER BY on a unique key), so rows compare as lists.
QUERIES = []


def read(name, stmt, ordered=False):
    QUERIES.append((name, "read", ordered, stmt))


def write(name, stmt):
    QUERIES.append((name, "write", False, stmt))


# ---- simple filters and lookups (session.get, filter_by, …)
read("get_customer", select(Customer).where(Customer.id == 3))
read("customers_by_tier", select(Customer).where(Customer.tier == "gold").order_by(Customer.id), True)
read("customers_null_email", select(Customer).where(Customer.email.is_(None)).order_by(Customer.id), True)
read("customers_not_null_tier", select(Customer.id, Customer.tier).where(Customer.tier.is_not(None)))
read("customers_in_ids", select(Customer).where(Customer.id.in_([1, 2, 3, 11])).order_by(Customer.id), True)
read("customers_not_in", select(Customer.id).where(Customer.id.not_in([1, 2])))
read("customers_or", select(Customer.id, Customer.name).where(or_(Customer.tier == "gold", Customer.active.is_(False))))
read("customers_and_not", select(Customer.id).where(and_(Customer.active, not_(Customer.tier == "bronze"))))
read("customers_like", select(Customer.id, Customer.email).where(Customer.email.like("%@%")).order_by(Customer.id.desc()), True)
read("customers_ilike", select(Customer.id).where(Customer.name.ilike("%CUST-1%")))
read("customers_between", select(Customer).where(Customer.created_at.between(ts(1), datetime.datetime(2024, 6, 1, tzinfo=datetime.timezone.utc))).order_by(Customer.id), True)
read("customers_json", select(Customer.id, Customer.profile["source"].astext.label("source")).where(Customer.profile["vip"].as_boolean() == true()))
read("products_cheap", select(Product).where(Product.price < D("15.00"), Product.discontinued.is_(False)).order_by(Product.price, Product.id), True)
read("products_stock_desc", select(Product.id, Product.sku, Product.stock).order_by(Product.stock.desc(), Product.id).limit(5), True)
read("orders_status_in", select(Order).where(Order.status.in_(["paid", "shipped"])).order_by(Order.id), True)
read("orders_unshipped", select(Order.id, Order.total).where(Order.shipped_at.is_(None), Order.status != "cancelled"))
read("orders_page_2", select(Order).order_by(Order.ordered_at.desc(), Order.id).limit(10).offset(10), True)
read("orders_first", select(Order).where(Order.customer_id == 4).order_by(Order.id).limit(1), True)
read("distinct_status", select(Order.status).distinct().order_by(Order.status), True)
read("for_update", select(Order).where(Order.id == 7).with_for_update())

# ---- counts and aggregates
read("count_customers", select(func.count()).select_from(Customer))
read("count_orders_filtered", select(func.count(Order.id)).where(Order.status == "paid"))
read("sum_totals_by_status", select(Order.status, func.sum(Order.total), func.count()).group_by(Order.status).order_by(Order.status), True)
read("avg_price", select(func.avg(Product.price), func.min(Product.price), func.max(Product.price)))
read("having", select(Order.customer_id, func.count(Order.id).label("n")).group_by(Order.customer_id).having(func.count(Order.id) > 2).order_by(Order.customer_id), True)
read("date_trunc", select(func.date_trunc("month", Order.ordered_at).label("m"), func.sum(Order.total)).group_by(literal_column("1")).order_by(literal_column("1")), True)
read("case_when", select(Order.id, case((Order.total > 200, "big"), (Order.total > 100, "medium"), else_="small").label("size")))
read("coalesce", select(Customer.id, func.coalesce(Customer.tier, "none")).order_by(Customer.id), True)
read("window", select(Order.id, Order.customer_id, func.row_number().over(partition_by=Order.customer_id, order_by=Order.id).label("rn")))
read("string_agg", select(Order.customer_id, func.string_agg(Order.status, literal_column("','")).label("s")).group_by(Order.customer_id))

# ---- joins and eager loading
read("join_customer", select(Order, Customer).join(Order.customer).where(Customer.tier == "gold").order_by(Order.id), True)
read("outerjoin_count", select(Customer.id, Customer.name, func.count(Order.id)).outerjoin(Customer.orders).group_by(Customer.id, Customer.name).order_by(Customer.id), True)
read("joinedload_customer", select(Order).options(joinedload(Order.customer)).where(Order.id < 6).order_by(Order.id), True)
read("joinedload_items", select(Order).options(joinedload(Order.items)).where(Order.id.in_([2, 3])))
read("joinedload_nested", select(Order).options(joinedload(Order.items).joinedload(OrderItem.product)).where(Order.customer_id == 2))
read("joinedload_plan", select(Customer).options(joinedload(Customer.plan)).order_by(Customer.id), True)
read("contains_eager", select(Order).join(Order.customer).options(contains_eager(Order.customer)).where(Customer.active).order_by(Order.id), True)
# What selectinload emits for its second query.
read("selectinload_items", select(OrderItem).where(OrderItem.order_id.in_([1, 2, 3, 4, 5])).order_by(OrderItem.order_id, OrderItem.line_no), True)
read("selectinload_orders", select(Order).where(Order.customer_id.in_([1, 2, 3])))
read("three_way_join", select(Customer.name, Product.name, OrderItem.quantity).join(Order, Order.customer_id == Customer.id).join(OrderItem, OrderItem.order_id == Order.id).join(Product, Product.id == OrderItem.product_id).where(OrderItem.quantity >= 3))
later = aliased(Order, name="later")
read("self_join_alias", select(Order.id, later.id).join(later, and_(later.customer_id == Order.customer_id, later.id > Order.id)).where(Order.customer_id == 1))
read("join_plans", select(Customer.id, Plan.name, Plan.monthly_price).join(Plan, Customer.plan_id == Plan.id).order_by(Customer.id), True)
read("plans_only", select(Plan).order_by(Plan.id), True)

# ---- subqueries, EXISTS, CTEs, set operations
spent = select(Order.customer_id, func.sum(Order.total).label("spent")).group_by(Order.customer_id).subquery()
read("subquery_join", select(Customer.name, spent.c.spent).join(spent, spent.c.customer_id == Customer.id).order_by(Customer.id), True)
read("exists", select(Customer.id).where(exists().where(Order.customer_id == Customer.id, Order.status == "paid")))
read("any_relationship", select(Customer.id).where(Customer.orders.any(Order.status == "cancelled")))
read("not_exists", select(Customer.id).where(~Customer.orders.any()))
read("scalar_subquery", select(Customer.id, select(func.count(Order.id)).where(Order.customer_id == Customer.id).scalar_subquery().label("n")).order_by(Customer.id), True)
read("in_subquery", select(Product.id, Product.name).where(Product.id.in_(select(OrderItem.product_id).where(OrderItem.quantity > 3))))
big = select(Order.id, Order.customer_id, Order.total).where(Order.total > 150).cte("big_orders")
read("cte_join", select(Customer.name, big.c.id, big.c.total).join(big, big.c.customer_id == Customer.id))
read("union", union(select(Customer.id).where(Customer.tier == "gold"), select(Order.customer_id).where(Order.status == "new")))
read("union_all", union_all(select(Order.id.label("x")).where(Order.status == "paid"), select(OrderItem.order_id).where(OrderItem.quantity == 1)))
o2 = aliased(Order, name="o2")
read("max_per_customer", select(Order).where(Order.total == select(func.max(o2.total)).where(o2.customer_id == Order.customer_id).scalar_subquery()))
read("cast_and_extract", select(Order.id, cast(Order.total, Integer), func.extract("day", Order.ordered_at)).where(Order.id <= 5).order_by(Order.id), True)
read("accounts_lookup", select(Account).where(Account.email == "acct2@tenant-a.example"))
read("accounts_all", select(Account.id, Account.display_name).order_by(Account.id), True)

# ---- writes (unit-of-work flushes and bulk statements)
write("insert_customer", insert(Customer).values(id=101, name="A-orm-cust", email="orm@tenant-a.example", tier="gold", plan_id=2, active=True, created_at=ts(5), profile=None))
write("insert_customer_returning", insert(Customer).values(id=102, name="A-orm-cust-2", email=None, tier=None, plan_id=None, active=False, created_at=ts(6)).returning(Customer.id, Customer.name))
write("insert_products_multi", insert(Product).values([
    dict(id=101, sku="A-ORM-1", name="A-orm-prod-1", price=D("3.50"), stock=5, discontinued=False),
    dict(id=102, sku="A-ORM-2", name="A-orm-prod-2", price=D("7.25"), stock=0, discontinued=True),
]))
write("insert_order", insert(Order).values(id=101, customer_id=101, status="new", ordered_at=ts(7, 9), shipped_at=None, total=D("10.75"), note="A-orm-order"))
write("insert_items", insert(OrderItem).values([
    dict(order_id=101, line_no=1, product_id=101, quantity=2, unit_price=D("3.50"), discount=None),
    dict(order_id=101, line_no=2, product_id=102, quantity=1, unit_price=D("7.25"), discount=D("0.10")),
]))
write("upsert_customer", postgresql.insert(Customer).values(id=3, name="A-orm-upsert", active=True, created_at=ts(8)).on_conflict_do_update(constraint="customers_pkey", set_={"name": literal_column("excluded.name")}))
write("upsert_nothing", postgresql.insert(Product).values(id=2, sku="A-ORM-X", name="A-orm-x", price=D("1.00"), stock=1, discontinued=False).on_conflict_do_nothing(constraint="products_pkey"))
write("update_status", update(Order).where(Order.id == 5).values(status="shipped", shipped_at=ts(9)))
write("update_expr", update(Product).where(Product.id.in_([1, 2])).values(stock=Product.stock - 1))
write("update_from", update(Order).where(Order.customer_id == Customer.id).where(Customer.tier == "gold").values(note="A-orm-vip"))
write("update_returning", update(Customer).where(Customer.active.is_(False)).values(tier="bronze").returning(Customer.id, Customer.tier))
write("update_subquery", update(Product).where(Product.id.in_(select(OrderItem.product_id).where(OrderItem.order_id == 3))).values(discontinued=True))
write("delete_items", delete(OrderItem).where(OrderItem.order_id == 4))
write("delete_using", delete(Order).where(Order.customer_id == Customer.id).where(Customer.active.is_(False)).where(Order.status == "cancelled"))
write("delete_returning", delete(OrderItem).where(OrderItem.quantity == 5).returning(OrderItem.order_id, OrderItem.line_no))
write("account_login", update(Account).where(Account.id == 1).values(login_count=Account.login_count + 1))
write("upsert_account", postgresql.insert(Account).values(id=3, email="acct3@tenant-a.example", display_name="A-orm-acct", login_count=0).on_conflict_do_update(index_elements=[Account.email], set_={"login_count": Account.login_count + 1}))


# numeric_dollar: no `%%` escaping of percent signs in the literal output.
LITERAL = postgresql.dialect(paramstyle="numeric_dollar")
DOLLAR = postgresql.dialect(paramstyle="numeric_dollar")


def literal_sql(stmt):
    return str(stmt.compile(dialect=LITERAL, compile_kwargs={"literal_binds": True, "render_postcompile": True}))


def param_tag(value):
    """`type:value` for the Rust side (values are sent in text format)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool:{'true' if value else 'false'}"
    if isinstance(value, int):
        return f"int8:{value}"
    if isinstance(value, decimal.Decimal):
        return f"numeric:{value}"
    if isinstance(value, datetime.datetime):
        return "timestamptz:'" + value.isoformat() + "'"
    text = str(value).replace("'", "''")
    return f"text:'{text}'"


def dollar_sql(stmt):
    compiled = stmt.compile(dialect=DOLLAR, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    names = compiled.positiontup or []
    return str(compiled), [params[n] for n in names]


def entry(name, kind, ordered, sql, params=None):
    lines = [f"-- @name orm_{name}", f"-- @kind {kind}"]
    if ordered:
        lines.append("-- @ordered")
    if params is not None:
        lines.append("-- @params " + " ".join(param_tag(p) for p in params))
    # Blank lines separate entries: squeeze them out of the statement.
    body = "\n".join(line for line in sql.strip().splitlines() if line.strip())
    lines.append(body)
    return "\n".join(lines)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    header = (
        "-- Generated by tests/oracle/orm/generate.py with SQLAlchemy {v}; do not edit.\n"
        "-- Regenerate: pip install sqlalchemy && python3 tests/oracle/orm/generate.py\n"
    ).format(v=sqlalchemy.__version__)
    literal = [entry(n, k, o, literal_sql(s)) for n, k, o, s in QUERIES]
    with open(os.path.join(here, "sqlalchemy.sql"), "w") as f:
        f.write(header + "\n" + "\n\n".join(literal) + "\n")
    dollar = []
    for n, k, o, s in QUERIES:
        sql, params = dollar_sql(s)
        if params:
            dollar.append(entry(n, k, o, sql, params))
    with open(os.path.join(here, "sqlalchemy_params.sql"), "w") as f:
        f.write(header + "\n" + "\n\n".join(dollar) + "\n")
    print(f"{len(QUERIES)} statements written, {len(dollar)} with parameters")


if __name__ == "__main__":
    main()
