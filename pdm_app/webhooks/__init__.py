"""Webhooks: every allocation change, signed per the Standard Webhooks specification and
delivered at least once from a transactional outbox.

``endpoints`` reads the configuration (PDM_WEBHOOKS), ``events`` turns history events
into messages (pure), ``delivery`` sends them from the jobs leader.
"""
