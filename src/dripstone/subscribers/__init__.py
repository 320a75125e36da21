"""Subscribers, subscription lists, subscriptions (opt-in/opt-out), custom fields, segments.

Adding a subscriber to a list records a `SubscriptionEvent` in the same transaction;
drip campaign triggers consume those events.

Modules:
    service        subscribers themselves: create, read, update, delete, bulk, detailed view
    lists          the default list (All contacts) and named lists; what uses a list
    membership     joining and re-joining lists, the global opt-out
    counts         every list's member and reachable counts, kept as the rows change; recount
    subscriptions  one subscriber on one list; subscribe / unsubscribe, by selection too
    custom_fields  field types and values
    segments       dynamic lists: saved selections
    selection      the SQL of a selection (search, filter groups, exceptions)
    rows           writing many rows: IN chunks, unique-index clashes as 422s
"""
