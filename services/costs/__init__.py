"""The costs service: a ledger of integer micro-dollars, budgets and reports."""
