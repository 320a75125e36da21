"""Drip campaigns.

Modules:
    graph       the graph contract: parsed once, checked, errors naming the node (pure)
    engine      what one enrollment does next, given its position, facts and now (pure)
    campaigns   saving, checking, listing and deleting campaigns; what they keep from deletion
    lifecycle   start, pause, resume
    enrollment  enrolling a list's members and whoever joins it later
    runner      advancing due enrollments through the engine, exactly once
    outgoing    what a drip step's message says, and whether it may go now
    report      per-node counts and the enrollments
"""
