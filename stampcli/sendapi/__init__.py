"""The send API's library side: what ``stamp serve`` (HTTP and SMTP) and workers share.

``config`` reads ``serve.yml`` (pools of API keys, their providers and limits);
``keys`` makes and checks API keys (only SHA-256 hashes are kept); ``model`` is
the request schema of ``POST /v1/messages``; ``compose`` turns an accepted
request into the :class:`~stampcli.render.message.Message` objects the
providers take. The use cases (queue, send, status) are in
:mod:`stampcli.service.api_send`.
"""
