"""Every call into a dependency's private API, fenced: one small module per dependency.

Each function says what private thing it touches and why; tests/shared/test_shims.py fails
loudly when an upgrade moves it. Submodules are imported explicitly (`beepgpt.shims.aiokafka`),
never from here, so a service imports only the shims of the dependencies it installs.
"""
