"""Reserve-then-settle token budgets (in-process) and the SQL outage classifier."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from agent_server.errors import BudgetExceeded
from agent_server.persistence.db import is_sql_outage
from agent_server.runs.budget import LocalTokenBudget, estimate_tokens


async def test_reservations_count_until_settled() -> None:
    budget = LocalTokenBudget(100)
    first = await budget.reserve("p", 60)
    assert first is not None
    with pytest.raises(BudgetExceeded) as refused:
        await budget.reserve("p", 60)  # 120 > 100 while the first is unsettled
    assert refused.value.code == "budget_exceeded"
    assert int(refused.value.headers["Retry-After"]) > 3600
    await budget.settle(first, 10)  # it really used 10: 90 free again
    assert await budget.reserve("p", 60) is not None
    assert await budget.reserve("other", 100) is not None  # per principal


async def test_a_request_larger_than_the_budget_is_told_to_lower_max_tokens() -> None:
    with pytest.raises(BudgetExceeded, match="lower max_tokens"):
        await LocalTokenBudget(100).reserve("p", 101)


async def test_settling_above_the_reservation_charges_the_difference() -> None:
    budget = LocalTokenBudget(100)
    reservation = await budget.reserve("p", 10)
    assert reservation is not None
    await budget.settle(reservation, 95)
    with pytest.raises(BudgetExceeded):
        await budget.reserve("p", 10)


def test_estimate_is_about_four_characters_a_token() -> None:
    assert estimate_tokens("abcd", "efgh") == 2
    assert estimate_tokens("a") == 1
    assert estimate_tokens("") == 0


def _wrapped(orig: BaseException, kind: type[sa_exc.DBAPIError]) -> BaseException:
    return kind("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        _wrapped(Exception("server closed the connection"), sa_exc.OperationalError),
        _wrapped(Exception("connection is closed"), sa_exc.InterfaceError),
        sa_exc.TimeoutError("QueuePool limit reached"),
        asyncpg.exceptions.ConnectionDoesNotExistError("gone"),
        asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
    ],
)
def test_connectivity_errors_are_outages(error: BaseException) -> None:
    assert is_sql_outage(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad"),
        _wrapped(Exception("duplicate key"), sa_exc.IntegrityError),
        _wrapped(Exception("syntax error"), sa_exc.ProgrammingError),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
    ],
)
def test_errors_of_our_own_queries_are_not_outages(error: BaseException) -> None:
    assert not is_sql_outage(error)


def test_an_outage_is_found_through_the_cause_chain() -> None:
    try:
        try:
            raise ConnectionResetError(104, "reset")
        except ConnectionResetError as inner:
            raise RuntimeError("the write failed") from inner
    except RuntimeError as outer:
        assert is_sql_outage(outer)
