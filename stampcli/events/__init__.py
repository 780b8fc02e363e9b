"""What providers say happened to a message, in one vocabulary (:mod:`.model`)."""
