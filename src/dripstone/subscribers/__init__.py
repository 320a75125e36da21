"""Subscribers, subscription lists, subscriptions (opt-in/opt-out), custom fields, segments.

Adding a subscriber to a list records a `SubscriptionEvent` in the same transaction;
drip campaign triggers consume those events.
"""
