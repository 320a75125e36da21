"""Analytics: what happened to the messages of campaign sends, read from deliveries and events."""
