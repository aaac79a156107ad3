"""Outbound connections' shared configuration: the egress proxy and the trusted CAs, read
once from the settings by the proxy (to providers) and the delivery worker (to webhooks)."""
