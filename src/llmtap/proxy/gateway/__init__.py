"""Gateway features a call switches on by header: cache, rate limits, retries, fallbacks.

``ProxyApp.dispatch`` prepares every call the same way (route, auth, request bytes) and then
hands it either straight to the provider pool or, only when the call sent one of the feature
headers (``TapHeaders.features``) or its key carries a policy, to ``Gateway.run``. A plain call
never reaches this package: "features cost nothing when off" (docs/architecture.md).

Modules here know the exchange and the pool only through the Protocols of ``llmtap.proxy.types``.
"""
