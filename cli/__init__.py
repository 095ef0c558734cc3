"""Entry points above the client: ``python -m cli serve`` (the ``durable-sessions`` command), the
demo and the codec server. Nothing below imports them."""
