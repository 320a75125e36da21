"""Idempotent POSTs: a POST sent again with the same `Idempotency-Key` (and the same request)
within 24 hours gets the first answer again, and does nothing again."""
