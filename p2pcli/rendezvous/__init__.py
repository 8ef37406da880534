"""Ways to meet peers besides our own signaling server (issue 15): the protocols, sans I/O."""
