"""Real parts that tests and benchmarks start themselves: a private sshd, a link-delay proxy."""
