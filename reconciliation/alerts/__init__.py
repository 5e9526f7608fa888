"""Where findings go once they matter: a webhook, an email, a HubSpot ticket.

Each channel is its own module, imported where it is used (`reconciliation.alerts.hubspot`),
so importing this package stays free of HTTP libraries.
"""
