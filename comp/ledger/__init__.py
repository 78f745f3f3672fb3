"""The submission ledger (:mod:`comp.ledger.store`) and `comp lb` (:mod:`comp.ledger.leaderboard`)."""

from comp.ledger.leaderboard import Correlation, LbReport, correlation, lb_report, reconcile, refresh
from comp.ledger.store import REFRESHED, SCHEMA_VERSION, Ledger, LedgerEntry, utc_now

__all__ = [
    "REFRESHED",
    "SCHEMA_VERSION",
    "Correlation",
    "LbReport",
    "Ledger",
    "LedgerEntry",
    "correlation",
    "lb_report",
    "reconcile",
    "refresh",
    "utc_now",
]
