"""Where findings go once they matter: a webhook, an email, a HubSpot ticket.

- `policy.py`: which alerts a night's runs deserve (pure: results + state -> alerts + state)
- `messages.py`: the words (per customer, or one digest), counts and ids only
- `config.py`: the deployment's alerts file, the webhook variable, the customers' block
- `sinks.py`: webhook, email (SMTP + STARTTLS), HubSpot tickets (`hubspot.py`'s client)
- `send.py`: `send_alerts`, the one implementation behind the sensor and `scan --alert`

Importing this package imports none of them, so it stays free of HTTP libraries.
"""
