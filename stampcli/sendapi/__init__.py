"""The send API's library side: what ``stamp serve`` (HTTP and SMTP) and workers share.

``config`` reads ``serve.yml`` (pools of API keys, their providers and limits);
``keys`` makes and checks API keys (only SHA-256 hashes are kept); ``model`` is
the request schema of ``POST /v1/messages``; ``compose`` turns an accepted
request into the :class:`~stampcli.render.message.Message` objects the
providers take. The use cases (queue, send, status) are in
:mod:`stampcli.service.api_send`.
"""

import re

_API_ID = re.compile(r"msg_[0-9a-f]{27}")


def is_api_message_id(value: str | None) -> bool:
    """True for the id of a send-API message (what its provider tags carry as ``campaign``)."""
    return value is not None and _API_ID.fullmatch(value) is not None
