"""Network transports under the providers: the httpcore backend and the SMTP wire protocol."""
