"""Analytics: what mailings did, as numbers every part of Dripstone reads the same way.

engagement  pure rules: an open by a person or a machine, a click by a person or a bot
models      counters per campaign send, per link of a send, per drip email node, per subscriber
counters    the counters kept in the transaction of each event, their reads, rebuild
tables      the rows of a send's tables (sends, links, clickers, deliveries), streamed
export      those rows as a streamed JSON envelope or as CSV
api         the Paubox analytics and tracking-link routes
"""
